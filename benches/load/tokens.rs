//! Bearer tokens for the runs with authentication: HS256 with a shared
//! secret, and ES256 with a key in a JWKS file, as an identity provider
//! would sign them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub const HS256_SECRET: &str = "benchmark-secret-0123456789abcdef0123";

/// Claims a fleet_admin token carries, valid for a day.
fn claims() -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({"sub": "bench", "roles": ["fleet_admin"], "iat": now, "exp": now + 86_400})
}

pub fn hs256() -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(HS256_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// An ES256 key, its JWKS written to a file.
pub struct EsKey {
    key: EncodingKey,
    pub jwks_file: PathBuf,
}

impl EsKey {
    pub fn new(dir: &Path) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let raw = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
            "alg": "ES256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
        std::fs::create_dir_all(dir).expect("data root");
        let jwks_file = dir.join("bench-jwks.json");
        std::fs::write(&jwks_file, jwks.to_string()).expect("write the JWKS");
        Self {
            key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("key"),
            jwks_file,
        }
    }

    pub fn token(&self) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("bench".into());
        jsonwebtoken::encode(&header, &claims(), &self.key).expect("sign")
    }
}
