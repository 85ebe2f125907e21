//! Credentials for tests: HS256 tokens, JWKS key pairs (ES256 and EdDSA
//! made with rcgen, RS256 from a committed test-only key), API key files,
//! and a test CA with server and client certificates, all written to a
//! temporary directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use vehicle_allocation::auth::AuthSettings;
use vehicle_allocation::auth::jwt::{Claims, JwtConfig, KeySource, mint_hs256};
use vehicle_allocation::domain::access::Role;

/// The HS256 secret of test apps.
pub const SECRET: &str = "test-secret-not-for-production-0123456789";
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "vehicle-allocation";

/// Token settings as the test apps verify them.
pub fn jwt_config(keys: KeySource) -> JwtConfig {
    JwtConfig {
        keys,
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        employee_claim: "sub".into(),
        roles_claim: "roles".into(),
        jwks_refresh: Duration::from_secs(300),
    }
}

/// Auth settings with the HS256 test secret.
pub fn hs256_auth() -> AuthSettings {
    AuthSettings {
        jwt: Some(jwt_config(KeySource::Hs256(SECRET.into()))),
        ..AuthSettings::default()
    }
}

/// An HS256 token for `employee` with `roles`, valid for an hour from `now`.
pub fn token(employee: &str, roles: &[Role], now: DateTime<Utc>) -> String {
    let config = jwt_config(KeySource::Hs256(SECRET.into()));
    let claims = Claims {
        employee,
        roles,
        ttl: Duration::from_secs(3600),
        now,
    };
    mint_hs256(SECRET, &config, &claims).unwrap()
}

/// Standard claims around `now`, shifted by `offset` seconds.
pub fn claims(employee: &str, roles: &[&str], now: DateTime<Utc>) -> serde_json::Value {
    let now = now.timestamp();
    json!({
        "sub": employee, "roles": roles, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 3600,
    })
}

/// A token with any header and claims, signed with `key`.
pub fn sign(header: Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key and its public JWK.
pub struct JwkPair {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: serde_json::Value,
    /// The public key in PEM (for key-confusion attempts).
    pub public_pem: String,
}

impl JwkPair {
    pub fn es256(kid: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = key.public_key_raw();
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
            public_pem: key.public_key_pem(),
        }
    }

    pub fn eddsa(kid: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.public_key_raw())}),
            public_pem: key.public_key_pem(),
        }
    }

    /// The committed test-only RSA key.
    pub fn rs256(kid: &str) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let pem = std::fs::read(dir.join("rsa-test-key.pem")).unwrap();
        let n = std::fs::read_to_string(dir.join("rsa-test-key.n")).unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": n.trim(), "e": "AQAB"}),
            public_pem: std::fs::read_to_string(dir.join("rsa-test-key.pub.pem")).unwrap(),
        }
    }

    /// A token signed with this key, naming its kid.
    pub fn token(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        sign(header, claims, &self.encoding)
    }
}

/// A JWKS document of these keys.
pub fn jwks(keys: &[&JwkPair]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// The `[[key]]` entry of an API key file.
pub fn key_entry(name: &str, key: &str, roles: &[&str]) -> String {
    format!(
        "[[key]]\nname = {name:?}\nsha256 = {:?}\nroles = {roles:?}\n\n",
        vehicle_allocation::auth::keys::digest_hex(key)
    )
}

/// A test CA and the certificates it issued, as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

/// A certificate and its key, in PEM, and where they were written.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestPki {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "vehicle-allocation test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca_pem: cert.pem(),
        }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for localhost and 127.0.0.1, as `name`.pem.
    pub fn server(&self, name: &str) -> Issued {
        self.issue(
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose first DNS name is `dns`.
    pub fn client(&self, dns: &str) -> Issued {
        self.issue(
            dns,
            vec![dns.into()],
            dns,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        name: &str,
        names: Vec<String>,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_file = self.dir.path().join(format!("{name}.pem"));
        let key_file = self.dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file,
            key_file,
        }
    }
}
