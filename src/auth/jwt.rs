//! JWT bearer tokens: HS256 with a shared secret (development and tests), or
//! RS256, ES256 and EdDSA with keys from a JWKS document (a file, or a URL
//! fetched at startup, refreshed in the background and refetched, at most
//! every [`REFETCH_MIN_INTERVAL`], when a token names an unknown key).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::domain::access::{Principal, PrincipalKind, Role};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// A token naming a key the set does not hold triggers a refetch of the
/// JWKS URL, but no more often than this.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// The largest JWKS document fetched.
const JWKS_MAX_BYTES: usize = 1024 * 1024;

/// Verified tokens are remembered this long (and their `exp` still checked
/// on every use), so a caller's signature is checked once a minute rather
/// than once a request: ES256 and RS256 cost far more than a cached read.
const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// How many verified tokens are remembered at most, and the longest one
/// remembered: together they bound the map's memory (about 40 MiB).
const VERIFIED_CAPACITY: usize = 10_000;
const VERIFIED_MAX_TOKEN_BYTES: usize = 4096;

/// What a verified token says: built once, shared by every request that
/// presents the token.
#[derive(Debug, Clone)]
struct Verified {
    principal: Arc<Principal>,
    exp: i64,
    /// When the signature was checked.
    checked: Instant,
}

/// Where the verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// One shared secret, HS256 only.
    Hs256(String),
    /// A JWKS document on disk (re-read on SIGHUP).
    JwksFile(PathBuf),
    /// A JWKS document at a URL.
    JwksUrl(String),
}

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub keys: KeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The claim naming the employee the caller is.
    pub employee_claim: String,
    /// The claim listing the caller's roles.
    pub roles_claim: String,
    /// How often a JWKS URL is fetched again.
    pub jwks_refresh: Duration,
}

/// Why a token was refused; `Invalid` carries a reason for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the JWKS from {origin} is not valid: {message}")]
    Invalid { origin: String, message: String },
}

/// Verification keys by key id.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    /// Keys without a `kid`: used for tokens without one when alone.
    anonymous: Vec<(DecodingKey, Algorithm)>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>) -> Option<&(DecodingKey, Algorithm)> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => match (self.anonymous.as_slice(), self.by_kid.len()) {
                ([only], 0) => Some(only),
                ([], 1) => self.by_kid.values().next(),
                _ => None,
            },
        }
    }

    fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }
}

/// Checks bearer tokens.
pub struct JwtVerifier {
    config: JwtConfig,
    hs256: Option<DecodingKey>,
    keys: RwLock<Arc<KeySet>>,
    /// When a token with an unknown `kid` last made us refetch.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    http: Option<reqwest::Client>,
    /// Tokens whose signature and claims were checked lately, by the
    /// token's text; emptied whenever the keys change. A plain map under a
    /// read lock: a hit is a hash lookup, with nothing to record.
    verified: RwLock<HashMap<String, Arc<Verified>>>,
    /// Bumped whenever the keys change, so that a verification that read
    /// the old keys does not land in the cache after it was emptied.
    generation: std::sync::atomic::AtomicU64,
    /// The last JWKS document loaded, to leave the keys (and the cache)
    /// alone when a fetch brings the same document again.
    document: std::sync::Mutex<String>,
}

impl JwtVerifier {
    /// Loads the keys. A JWKS URL that cannot be fetched now is logged and
    /// retried in the background: tokens are refused until it answers.
    pub async fn open(config: JwtConfig) -> Result<Self, JwksError> {
        let mut verifier = Self {
            hs256: None,
            keys: RwLock::new(Arc::default()),
            last_refetch: tokio::sync::Mutex::new(None),
            http: None,
            verified: RwLock::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            document: std::sync::Mutex::new(String::new()),
            config,
        };
        match verifier.config.keys.clone() {
            KeySource::Hs256(secret) => {
                verifier.hs256 = Some(DecodingKey::from_secret(secret.as_bytes()));
            }
            KeySource::JwksFile(_) => verifier.reload_file()?,
            KeySource::JwksUrl(url) => {
                check_jwks_url(&url)?;
                verifier.http = Some(
                    reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .map_err(|e| JwksError::Fetch {
                            url: url.clone(),
                            message: e.to_string(),
                        })?,
                );
                if let Err(error) = verifier.fetch().await {
                    tracing::error!(%error, "no JWKS at startup; tokens are refused until it can be fetched");
                }
            }
        }
        Ok(verifier)
    }

    /// Re-reads a JWKS file (on SIGHUP); other sources are left alone.
    pub fn reload_file(&self) -> Result<(), JwksError> {
        let KeySource::JwksFile(path) = &self.config.keys else {
            return Ok(());
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| JwksError::Read {
            path: origin.clone(),
            source,
        })?;
        let set = parse_jwks(&text, &origin)?;
        tracing::info!(keys = set.len(), path = %origin, "loaded the JWKS file");
        self.replace_keys(set, text);
        Ok(())
    }

    /// Fetches the JWKS URL and replaces the keys.
    pub async fn fetch(&self) -> Result<(), JwksError> {
        let (KeySource::JwksUrl(url), Some(http)) = (&self.config.keys, &self.http) else {
            return Ok(());
        };
        let fetch_error = |message: String| JwksError::Fetch {
            url: url.clone(),
            message,
        };
        let mut response = http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fetch_error(e.to_string()))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_error(e.to_string()))?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(fetch_error(format!(
                    "the document is over {JWKS_MAX_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text =
            String::from_utf8(body).map_err(|_| fetch_error("the document is not UTF-8".into()))?;
        if *self.document.lock().unwrap_or_else(|e| e.into_inner()) == text {
            return Ok(());
        }
        let set = parse_jwks(&text, url)?;
        tracing::info!(keys = set.len(), %url, "fetched the JWKS");
        self.replace_keys(set, text);
        Ok(())
    }

    /// New keys; tokens verified with the old ones are checked again.
    fn replace_keys(&self, set: KeySet, document: String) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        *self.document.lock().unwrap_or_else(|e| e.into_inner()) = document;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.verified
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether keys come from a URL that [`Self::refresh_every`] keeps fresh.
    pub fn has_url(&self) -> bool {
        self.http.is_some()
    }

    /// Fetches the JWKS URL every `jwks_refresh` (sooner while it has never
    /// answered) until `stop` completes.
    pub async fn refresh_every(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = if self.current().len() == 0 {
                Duration::from_secs(5).min(self.config.jwks_refresh)
            } else {
                self.config.jwks_refresh
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(error) = self.fetch().await {
                tracing::warn!(%error, "JWKS refresh failed; keeping the keys we have");
            }
        }
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The answer for a token verified lately, without checking a
    /// signature; `None` for a token not seen lately.
    pub fn verify_known(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Result<Arc<Principal>, TokenError>> {
        let known = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .filter(|known| known.checked.elapsed() < VERIFIED_TTL)
            .cloned()?;
        if now.timestamp() > known.exp.saturating_add(LEEWAY_SECONDS as i64) {
            return Some(Err(TokenError::Expired));
        }
        Some(Ok(Arc::clone(&known.principal)))
    }

    /// The employee (with roles) a valid token speaks for, at `now` (the
    /// service's clock, so that tests can move it).
    pub async fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<Principal>, TokenError> {
        if let Some(known) = self.verify_known(token, now) {
            return known;
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let verified = self.verify_afresh(token, now).await?;
        let answer = Arc::clone(&verified.principal);
        // Not remembered if the keys changed meanwhile: it was checked with
        // keys that may be gone.
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation
            && token.len() <= VERIFIED_MAX_TOKEN_BYTES
        {
            let mut verified_map = self.verified.write().unwrap_or_else(|e| e.into_inner());
            if verified_map.len() >= VERIFIED_CAPACITY {
                // Full: keep the fresh, and if all are fresh start over.
                verified_map.retain(|_, known| known.checked.elapsed() < VERIFIED_TTL);
                if verified_map.len() >= VERIFIED_CAPACITY {
                    verified_map.clear();
                }
            }
            verified_map.insert(token.to_owned(), Arc::new(verified));
        }
        Ok(answer)
    }

    /// Checks the token's signature and claims.
    async fn verify_afresh(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Verified, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(describe(&e)))?;
        refuse_crit(token)?;
        let claims = match &self.hs256 {
            Some(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(TokenError::Invalid(format!(
                        "algorithm {:?} where HS256 is configured",
                        header.alg
                    )));
                }
                self.decode(token, key, Algorithm::HS256, now)?
            }
            None => {
                if !matches!(
                    header.alg,
                    Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
                ) {
                    return Err(TokenError::Invalid(format!(
                        "algorithm {:?}; the JWKS takes RS256, ES256 and EdDSA",
                        header.alg
                    )));
                }
                let kid = header.kid.as_deref();
                let mut keys = self.current();
                if keys.find(kid).is_none() && self.refetch_allowed().await {
                    if let Err(error) = self.fetch().await {
                        tracing::warn!(
                            %error,
                            request_id = crate::telemetry::request_id(),
                            "JWKS refetch for an unknown key failed"
                        );
                    }
                    keys = self.current();
                }
                let Some((key, alg)) = keys.find(kid) else {
                    return Err(TokenError::Invalid(format!("unknown key id {kid:?}")));
                };
                if *alg != header.alg {
                    return Err(TokenError::Invalid(format!(
                        "algorithm {:?} for a {alg:?} key",
                        header.alg
                    )));
                }
                self.decode(token, key, *alg, now)?
            }
        };
        self.principal(&claims)
    }

    /// Whether an unknown `kid` may trigger a fetch now; records it if so.
    async fn refetch_allowed(&self) -> bool {
        if !self.has_url() {
            return false;
        }
        let mut last = self.last_refetch.lock().await;
        let allowed = last.is_none_or(|at| at.elapsed() >= REFETCH_MIN_INTERVAL);
        if allowed {
            *last = Some(Instant::now());
        }
        allowed
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Map<String, Value>, TokenError> {
        let validation = validation(&self.config, alg);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(describe(&e)))?;
        // The times are checked here, against the service's clock.
        let now = now.timestamp();
        let leeway = LEEWAY_SECONDS as i64;
        let time = |name: &str| {
            claims.get(name).map(|v| {
                v.as_i64()
                    .ok_or_else(|| TokenError::Invalid(format!("{name:?} is not a number")))
            })
        };
        let exp =
            time("exp").unwrap_or_else(|| Err(TokenError::Invalid("no \"exp\" claim".into())))?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = time("nbf").transpose()?
            && now.saturating_add(leeway) < nbf
        {
            return Err(TokenError::Invalid("not valid yet (nbf)".into()));
        }
        Ok(claims)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Verified, TokenError> {
        let employee = claims
            .get(&self.config.employee_claim)
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .ok_or_else(|| {
                TokenError::Invalid(format!(
                    "no usable {:?} claim naming the employee",
                    self.config.employee_claim
                ))
            })?;
        let roles = match claims.get(&self.config.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Role::parse)
                .collect(),
            // Space-separated, as OAuth scopes are.
            Some(Value::String(text)) => text.split_whitespace().filter_map(Role::parse).collect(),
            _ => BTreeSet::new(),
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| TokenError::Invalid("no \"exp\" claim".into()))?;
        Ok(Verified {
            principal: Arc::new(Principal::new(employee, PrincipalKind::Token, roles)),
            exp,
            checked: Instant::now(),
        })
    }
}

/// A JWKS URL must be https: whoever can change the keys in transit can
/// sign any token. Plain http only to this host, for tests and sidecars.
fn check_jwks_url(url: &str) -> Result<(), JwksError> {
    let refuse = |message: &str| JwksError::Fetch {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let uri: http::Uri = url.parse().map_err(|_| refuse("not a URL"))?;
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(|c| c == '[' || c == ']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(refuse(
            "the JWKS URL must be https (http only on this host)",
        )),
    }
}

fn validation(config: &JwtConfig, alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    // exp and nbf are checked against the service's clock after decoding.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` header
/// names an extension it does not understand. This service understands
/// none, so any `crit`, well-formed or not (even `null`), is refused. Read
/// from the header's JSON itself: the library takes a `crit` and ignores it.
fn refuse_crit(token: &str) -> Result<(), TokenError> {
    use base64::Engine as _;
    let malformed = || TokenError::Invalid("malformed token".into());
    let segment = token.split('.').next().unwrap_or_default();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed())?;
    let header: Map<String, Value> = serde_json::from_slice(&json).map_err(|_| malformed())?;
    match header.get("crit") {
        None => Ok(()),
        Some(Value::Array(names)) if !names.is_empty() && names.iter().all(Value::is_string) => {
            Err(TokenError::Invalid(
                "the header's crit names extensions this service does not understand".into(),
            ))
        }
        Some(_) => Err(TokenError::Invalid("the header's crit is malformed".into())),
    }
}

fn describe(error: &jsonwebtoken::errors::Error) -> String {
    match error.kind() {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidAlgorithm => "algorithm not allowed".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("no {claim:?} claim"),
        _ => "malformed token".into(),
    }
}

/// The usable signing keys of a JWKS document.
fn parse_jwks(text: &str, origin: &str) -> Result<KeySet, JwksError> {
    let invalid = |message: String| JwksError::Invalid {
        origin: origin.to_owned(),
        message,
    };
    let set: JwkSet = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut keys = KeySet::default();
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        // The EdDSA verifier assumes 32 key bytes and would panic on fewer.
        if let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&okp.x);
            if decoded.map_or(true, |x| x.len() != 32) {
                return Err(invalid(format!(
                    "key {:?}: an Ed25519 key must be 32 bytes",
                    jwk.common.key_id.as_deref().unwrap_or("")
                )));
            }
        }
        let Some(alg) = jwk_algorithm(jwk) else {
            tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWKS key that is not RS256, ES256 or EdDSA");
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            invalid(format!(
                "key {:?}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("")
            ))
        })?;
        match &jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid.clone(), (key, alg));
            }
            None => keys.anonymous.push((key, alg)),
        }
    }
    Ok(keys)
}

/// RS256, ES256 or EdDSA, as the key says or as its type implies.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match &jwk.common.key_algorithm {
        None => Some(implied),
        Some(stated) => (stated.to_string() == format!("{implied:?}")).then_some(implied),
    }
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    pub employee: &'a str,
    pub roles: &'a [Role],
    pub ttl: Duration,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// An HS256 token for `claims`, shaped as `config` verifies it.
pub fn mint_hs256(
    secret: &str,
    config: &JwtConfig,
    claims: &Claims<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = claims.now.timestamp();
    let mut body = Map::new();
    body.insert(config.employee_claim.clone(), claims.employee.into());
    body.insert(
        config.roles_claim.clone(),
        claims
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .into(),
    );
    body.insert("iat".into(), now.into());
    body.insert("nbf".into(), now.into());
    body.insert("exp".into(), (now + claims.ttl.as_secs() as i64).into());
    if let Some(issuer) = &config.issuer {
        body.insert("iss".into(), issuer.as_str().into());
    }
    if let Some(audience) = &config.audience {
        body.insert("aud".into(), audience.as_str().into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &body,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(keys: KeySource) -> JwtConfig {
        JwtConfig {
            keys,
            issuer: Some("https://idp.example.com".into()),
            audience: Some("vehicle-allocation".into()),
            employee_claim: "sub".into(),
            roles_claim: "roles".into(),
            jwks_refresh: Duration::from_secs(300),
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .to_utc()
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_names_the_employee_and_roles() {
        let config = config(KeySource::Hs256("dev-secret".into()));
        let verifier = JwtVerifier::open(config.clone()).await.unwrap();
        let token = mint_hs256(
            "dev-secret",
            &config,
            &Claims {
                employee: "emp-00042",
                roles: &[Role::Employee, Role::Auditor],
                ttl: Duration::from_secs(600),
                now: now(),
            },
        )
        .unwrap();
        let principal = verifier.verify(&token, now()).await.unwrap();
        assert_eq!(principal.id, "emp-00042");
        assert_eq!(principal.kind, PrincipalKind::Token);
        assert_eq!(
            principal.roles,
            BTreeSet::from([Role::Employee, Role::Auditor])
        );
    }

    #[tokio::test]
    async fn tokens_are_refused_for_each_flaw() {
        let config = config(KeySource::Hs256("dev-secret".into()));
        let verifier = JwtVerifier::open(config.clone()).await.unwrap();
        let mint = |secret: &str, config: &JwtConfig, ttl: i64, shift: i64| {
            let claims = Claims {
                employee: "emp-1",
                roles: &[Role::Employee],
                ttl: Duration::from_secs(ttl as u64),
                now: now() + chrono::Duration::seconds(shift),
            };
            mint_hs256(secret, config, &claims).unwrap()
        };
        // Expired beyond the leeway, and within it.
        let expired = mint("dev-secret", &config, 10, -200);
        assert_eq!(
            verifier.verify(&expired, now()).await,
            Err(TokenError::Expired)
        );
        let barely = mint("dev-secret", &config, 10, -30);
        assert!(verifier.verify(&barely, now()).await.is_ok());
        let future = mint("dev-secret", &config, 600, 300);
        assert_eq!(
            verifier.verify(&future, now()).await,
            Err(TokenError::Invalid("not valid yet (nbf)".into()))
        );
        let forged = mint("other-secret", &config, 600, 0);
        assert_eq!(
            verifier.verify(&forged, now()).await,
            Err(TokenError::Invalid("bad signature".into()))
        );
        let mut other = config.clone();
        other.issuer = Some("https://evil.example.com".into());
        assert_eq!(
            verifier
                .verify(&mint("dev-secret", &other, 600, 0), now())
                .await,
            Err(TokenError::Invalid("wrong issuer".into()))
        );
        other = config.clone();
        other.audience = Some("another-service".into());
        assert_eq!(
            verifier
                .verify(&mint("dev-secret", &other, 600, 0), now())
                .await,
            Err(TokenError::Invalid("wrong audience".into()))
        );
        other = config.clone();
        other.employee_claim = "email".into();
        assert!(
            verifier
                .verify(&mint("dev-secret", &other, 600, 0), now())
                .await
                .is_err()
        );
        assert!(verifier.verify("not.a.token", now()).await.is_err());
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let verifier = JwtVerifier::open(config(KeySource::Hs256("s".into())))
            .await
            .unwrap();
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let exp = now().timestamp() + 600;
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"sub":"emp-1","roles":["fleet_admin"],"exp":{exp},"iss":"https://idp.example.com","aud":"vehicle-allocation"}}"#
            ))
        );
        assert!(matches!(
            verifier.verify(&token, now()).await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_crit_header_is_refused_whatever_it_names() {
        use base64::Engine as _;
        let config = config(KeySource::Hs256("s".into()));
        let verifier = JwtVerifier::open(config).await.unwrap();
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let exp = now().timestamp() + 600;
        let claims = b64(&format!(
            r#"{{"sub":"emp-1","roles":["employee"],"exp":{exp},"iss":"https://idp.example.com","aud":"vehicle-allocation"}}"#
        ));
        let signed = |header: &str| {
            let message = format!("{}.{claims}", b64(header));
            let signature = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(b"s"),
                Algorithm::HS256,
            )
            .unwrap();
            format!("{message}.{signature}")
        };
        // Signed right, so only the crit can refuse them.
        assert!(
            verifier
                .verify(&signed(r#"{"alg":"HS256","typ":"JWT"}"#), now())
                .await
                .is_ok()
        );
        for header in [
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"HS256","crit":["urn:example:unknown"]}"#,
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":"urn:example:unknown"}"#,
            r#"{"alg":"HS256","crit":null}"#,
        ] {
            assert!(
                matches!(
                    verifier.verify(&signed(header), now()).await,
                    Err(TokenError::Invalid(_))
                ),
                "{header}"
            );
        }
    }

    #[tokio::test]
    async fn a_remembered_token_still_expires_by_the_clock() {
        let config = config(KeySource::Hs256("dev-secret".into()));
        let verifier = JwtVerifier::open(config.clone()).await.unwrap();
        let claims = Claims {
            employee: "emp-1",
            roles: &[Role::Employee],
            ttl: Duration::from_secs(600),
            now: now(),
        };
        let token = mint_hs256("dev-secret", &config, &claims).unwrap();
        assert!(verifier.verify(&token, now()).await.is_ok());
        let later = now() + chrono::Duration::seconds(600 + 61);
        assert_eq!(
            verifier.verify(&token, later).await,
            Err(TokenError::Expired)
        );
    }

    #[tokio::test]
    async fn tokens_of_a_key_removed_from_the_jwks_file_stop_working_on_reload() {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = key.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        let verifier = JwtVerifier::open(config(KeySource::JwksFile(path.clone())))
            .await
            .unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let exp = now().timestamp() + 600;
        let body = serde_json::json!({"sub": "emp-1", "roles": ["employee"], "exp": exp,
            "iss": "https://idp.example.com", "aud": "vehicle-allocation"});
        let token = jsonwebtoken::encode(
            &header,
            &body,
            &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(verifier.verify(&token, now()).await.is_ok());
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        verifier.reload_file().unwrap();
        assert!(matches!(
            verifier.verify(&token, now()).await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn a_jwks_url_must_be_https_unless_it_is_on_this_host() {
        assert!(check_jwks_url("https://idp.example.com/jwks.json").is_ok());
        assert!(check_jwks_url("http://127.0.0.1:8081/jwks.json").is_ok());
        assert!(check_jwks_url("http://localhost/jwks.json").is_ok());
        assert!(check_jwks_url("http://[::1]:80/jwks.json").is_ok());
        assert!(check_jwks_url("http://idp.example.com/jwks.json").is_err());
        assert!(check_jwks_url("ftp://idp.example.com/jwks.json").is_err());
    }

    #[test]
    fn a_jwks_keeps_signing_keys_and_skips_symmetric_ones() {
        let text = r#"{"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let set = parse_jwks(text, "test").unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.find(Some("ed")).unwrap().1, Algorithm::EdDSA);
        assert!(set.find(Some("hmac")).is_none());
        assert!(
            set.find(None).is_some(),
            "a lone key serves tokens without kid"
        );
        assert!(parse_jwks("{}", "test").is_err());
        let short = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "s", "x": "AAAA"}]}"#;
        assert!(parse_jwks(short, "test").is_err());
    }
}
