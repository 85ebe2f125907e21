//! TLS for both listeners, with rustls (no OpenSSL): certificates from PEM
//! files, optional client certificates (mTLS), and a reload on SIGHUP that
//! the next connection picks up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where the certificates are, and who must present one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Require and verify client certificates issued by this CA on gRPC.
    pub client_ca_file: Option<PathBuf>,
    /// Require them on REST too.
    pub client_auth_http: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("the TLS certificate and key cannot be used: {0}")]
    Config(#[from] rustls::Error),
    #[error("the client CA in {path} cannot be used: {message}")]
    ClientCa { path: String, message: String },
}

/// The crypto every TLS configuration here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configurations in force, swapped whole on reload.
#[derive(Debug)]
pub struct TlsConfigs {
    settings: TlsSettings,
    current: RwLock<(Arc<ServerConfig>, Arc<ServerConfig>)>,
}

impl TlsConfigs {
    /// Loads the files; an error names the file at fault.
    pub fn load(settings: TlsSettings) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(build(&settings)?);
        Ok(Arc::new(Self { settings, current }))
    }

    /// Reads the files again; on an error the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = build(&self.settings)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The acceptor for the next gRPC connection.
    pub fn grpc_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()).0,
        ))
    }

    /// The acceptor for the next REST connection.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()).1,
        ))
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

fn build(settings: &TlsSettings) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), TlsError> {
    let certs = read_certs("TLS_CERT_FILE", &settings.cert_file)?;
    let key = read_key(&settings.key_file)?;
    let builder =
        || ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions();
    let plain = builder()?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())?;
    let verified = match &settings.client_ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("TLS_CLIENT_CA_FILE", path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            Some(
                builder()?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)?,
            )
        }
        None => None,
    };
    let with_alpn = |mut config: ServerConfig, protocols: &[&[u8]]| {
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    };
    let grpc = with_alpn(verified.clone().unwrap_or_else(|| plain.clone()), &[b"h2"]);
    let http_config = match verified {
        Some(verified) if settings.client_auth_http => verified,
        _ => plain,
    };
    let http = with_alpn(http_config, &[b"h2", b"http/1.1"]);
    Ok((grpc, http))
}

/// Every certificate in the PEM file at `path`.
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
            expected: "PEM certificate",
        });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "TLS_KEY_FILE",
            path: path.display().to_string(),
            expected: "PEM private key",
        },
        source => TlsError::Read {
            what: "TLS_KEY_FILE",
            path: path.display().to_string(),
            source,
        },
    })
}

/// The name a client certificate stands for: its first DNS subject
/// alternative name, or else its subject's common name.
pub fn certificate_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                return Some((*dns).to_owned());
            }
        }
    }
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// Makes ring the process's rustls provider, for the clients that use the
/// process default (the JWKS fetch, an https upstream). Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
