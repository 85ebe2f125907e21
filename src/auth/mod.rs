//! Who the caller is: JWT bearer tokens, API keys and TLS client
//! certificates, turned into a [`Principal`] at the edge of the gRPC server.
//! What that principal may do is decided in [`crate::domain::access`].

pub mod failures;
pub mod jwt;
pub mod keys;
pub mod rate;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rustls::pki_types::CertificateDer;

use crate::domain::access::{Principal, PrincipalKind};
use crate::reasons::{self, Reason};
use jwt::{JwtConfig, JwtVerifier, TokenError};
use keys::{KeyFile, KeyFileError};

/// The header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// How callers authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    pub jwt: Option<JwtConfig>,
    pub api_keys_file: Option<PathBuf>,
    /// Serve without authentication even on a non-loopback address.
    pub allow_unauthenticated: bool,
    pub rate_limit: Option<rate::RateLimit>,
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error(transparent)]
    Jwks(#[from] jwt::JwksError),
}

/// Why a caller was not authenticated. Each is answered UNAUTHENTICATED
/// with its reason; none echoes the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this call needs credentials: a bearer token (authorization: Bearer <token>) or an API key (x-api-key)"
    )]
    CredentialsMissing,
    #[error("the bearer token has expired; get a new one")]
    TokenExpired,
    #[error("the bearer token is not valid")]
    TokenInvalid,
    #[error("the API key is not valid")]
    ApiKeyInvalid,
}

impl AuthError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::CredentialsMissing => reasons::CREDENTIALS_MISSING,
            Self::TokenExpired => reasons::TOKEN_EXPIRED,
            Self::TokenInvalid => reasons::TOKEN_INVALID,
            Self::ApiKeyInvalid => reasons::API_KEY_INVALID,
        }
    }
}

/// A verified client certificate, as the REST listener passes it on to the
/// in-process gRPC call (gRPC connections carry theirs in the connection).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub CertificateDer<'static>);

/// The address of a REST caller, as the REST listener passes it on to the
/// in-process gRPC call (gRPC connections carry theirs in the connection):
/// what an anonymous caller's share and failed credentials are counted
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Turns credentials into principals.
pub struct Authenticator {
    /// No authentication configured: everyone is [`Principal::anonymous`].
    open: bool,
    jwt: Option<Arc<JwtVerifier>>,
    keys_file: Option<PathBuf>,
    keys: RwLock<Arc<KeyFile>>,
    /// Client certificates are verified by TLS and name a principal.
    certificates: bool,
}

impl Authenticator {
    /// Loads the configured keys. `client_certificates`: a TLS client CA is
    /// configured, so verified certificates authenticate too.
    pub async fn open(
        settings: &AuthSettings,
        client_certificates: bool,
    ) -> Result<Self, AuthSetupError> {
        let keys = match &settings.api_keys_file {
            Some(path) => KeyFile::load(path)?,
            None => KeyFile::default(),
        };
        let jwt = match &settings.jwt {
            Some(config) => Some(Arc::new(JwtVerifier::open(config.clone()).await?)),
            None => None,
        };
        let open = jwt.is_none() && settings.api_keys_file.is_none() && !client_certificates;
        Ok(Self {
            open,
            jwt,
            keys_file: settings.api_keys_file.clone(),
            keys: RwLock::new(Arc::new(keys)),
            certificates: client_certificates,
        })
    }

    /// Everyone is anonymous: for tests and the loopback default.
    pub fn anonymous() -> Self {
        Self {
            open: true,
            jwt: None,
            keys_file: None,
            keys: RwLock::new(Arc::default()),
            certificates: false,
        }
    }

    /// Whether no authentication is configured.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The token verifier, for its background refresh.
    pub fn jwt(&self) -> Option<Arc<JwtVerifier>> {
        self.jwt.clone()
    }

    /// Re-reads the API key file and a JWKS file (on SIGHUP). A file that no
    /// longer parses leaves the keys in force as they were.
    /// Each source is reloaded on its own: a broken key file does not hold
    /// up a JWKS rotation.
    pub fn reload(&self) -> Vec<AuthSetupError> {
        let mut errors = Vec::new();
        if let Some(path) = &self.keys_file {
            match KeyFile::load(path) {
                Ok(fresh) => {
                    let keys = fresh.key_count();
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                    // Only once the new keys are in force.
                    tracing::info!(keys, path = %path.display(), "reloaded the API key file");
                }
                Err(error) => errors.push(error.into()),
            }
        }
        if let Some(jwt) = &self.jwt
            && let Err(error) = jwt.reload_file()
        {
            errors.push(error.into());
        }
        errors
    }

    /// The caller that sent these headers over a connection with this
    /// verified client certificate, at `now`. A bearer token is tried
    /// first, then an API key, then the certificate. Without `fresh`, only
    /// tokens verified lately are taken (a signature check is what a peer
    /// that failed too often may not cost); API keys and certificates are
    /// lookups and always checked.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        certificate: Option<&CertificateDer<'_>>,
        now: DateTime<Utc>,
        fresh: bool,
    ) -> Result<Arc<Principal>, Refusal> {
        if self.open {
            static ANONYMOUS: std::sync::OnceLock<Arc<Principal>> = std::sync::OnceLock::new();
            return Ok(Arc::clone(
                ANONYMOUS.get_or_init(|| Arc::new(Principal::anonymous())),
            ));
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, token) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|token| !token.is_empty())
                .ok_or_else(|| Refusal::new(AuthError::TokenInvalid, "not a bearer token"))?;
            let Some(jwt) = &self.jwt else {
                return Err(Refusal::new(
                    AuthError::TokenInvalid,
                    "no token verification is configured",
                ));
            };
            let verified = match jwt.verify_known(token, now) {
                Some(known) => known,
                None if !fresh => return Err(Refusal::unchecked()),
                None => jwt.verify(token, now).await,
            };
            return match verified {
                Ok(principal) => Ok(principal),
                Err(TokenError::Expired) => Err(Refusal::new(AuthError::TokenExpired, "expired")),
                Err(TokenError::Invalid(why)) => Err(Refusal::new(AuthError::TokenInvalid, why)),
            };
        }
        if let Some(value) = headers.get(API_KEY_HEADER) {
            let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
            return match keys.find(value.as_bytes()) {
                Some(key) => Ok(Arc::clone(&key.principal)),
                None => Err(Refusal::new(AuthError::ApiKeyInvalid, "unknown API key")),
            };
        }
        if self.certificates
            && let Some(certificate) = certificate
            && let Some(name) = crate::tls::certificate_name(certificate)
        {
            let keys = Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
            let roles = keys.cert_roles(&name);
            return Ok(Arc::new(Principal::new(
                name,
                PrincipalKind::Certificate,
                roles,
            )));
        }
        Err(Refusal::new(
            AuthError::CredentialsMissing,
            "no credentials",
        ))
    }
}

/// A refused call: what the caller is told, and, for the log only, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: AuthError,
    pub why: std::borrow::Cow<'static, str>,
    /// Not checked at all: a token that would need a signature check,
    /// from a peer that may not cost one now.
    pub unchecked: bool,
}

impl Refusal {
    fn new(error: AuthError, why: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            error,
            why: why.into(),
            unchecked: false,
        }
    }

    fn unchecked() -> Self {
        Self {
            unchecked: true,
            ..Self::new(AuthError::TokenInvalid, "not checked: too many failures")
        }
    }

    /// Whether the caller presented credentials that were wrong, as
    /// someone guessing would: what counts against its peer. Missing or
    /// expired credentials are a client's mistake, not a guess.
    pub fn is_guess(&self) -> bool {
        !self.unchecked
            && matches!(
                self.error,
                AuthError::TokenInvalid | AuthError::ApiKeyInvalid
            )
    }
}
