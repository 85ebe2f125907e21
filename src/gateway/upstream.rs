//! The gRPC services the gateway calls: in the same process (no network
//! hop, but the same codec, validation and logging as a remote call), or a
//! remote server in gateway-only mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_client::HealthClient;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, ServiceExt};

use crate::grpc::metered::Observed;
use crate::grpc::{EdgeLayer, GrpcMetricsLayer};

/// A gRPC connection, whichever kind it is.
pub type GrpcService =
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, UpstreamError>;

/// Why a call could not reach the gRPC service.
///
/// A named type rather than a bare `BoxError`: with the latter, the compiler
/// cannot prove the handlers' futures `Send` (a higher-ranked lifetime in
/// `Into<BoxError>`).
#[derive(Debug)]
pub struct UpstreamError(BoxError);

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Clients of the services behind the gateway. Shared behind an `Arc`:
/// axum clones its state for every request.
#[derive(Clone)]
pub struct Upstream(Arc<Clients>);

/// The connection, and the health client the probes use.
pub struct Clients {
    /// The connection itself, for the calls made from descriptors.
    pub service: GrpcService,
    pub health: HealthClient<GrpcService>,
}

impl std::ops::Deref for Upstream {
    type Target = Clients;

    fn deref(&self) -> &Clients {
        &self.0
    }
}

/// TLS towards an https upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The CA the upstream's certificate must chain to; the system's roots
    /// when absent.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) to present.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Why the upstream connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, UpstreamSetupError> {
    std::fs::read(path).map_err(|source| UpstreamSetupError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Upstream {
    /// Calls `routes` directly; requests still pass the gRPC edge, so they
    /// are authenticated, limited and logged there with the gateway's
    /// request id and the caller's credentials.
    pub fn in_process(routes: Routes, edge: EdgeLayer, metrics: GrpcMetricsLayer) -> Self {
        let service = ServiceExt::<http::Request<Body>>::map_response(
            metrics.layer(edge.layer(routes)),
            |response: http::Response<Observed<Body>>| response.map(Body::new),
        );
        let service = ServiceExt::<http::Request<Body>>::map_err(
            service,
            |never: std::convert::Infallible| -> UpstreamError { match never {} },
        );
        Self::over(BoxCloneSyncService::new(service))
    }

    /// Connects to a gRPC server at `url` (e.g. `http://10.0.0.5:50051`,
    /// or `https://` with `tls`), lazily, so the gateway starts even while
    /// the server is down.
    pub fn remote(
        url: &str,
        timeout: Duration,
        tls: &UpstreamTls,
    ) -> Result<Self, UpstreamSetupError> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(timeout)
            .timeout(timeout);
        if url.starts_with("https://") {
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca_file {
                Some(path) => config.ca_certificate(Certificate::from_pem(read(path)?)),
                None => config.with_native_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(config)?;
        }
        let channel: Channel = endpoint.connect_lazy();
        let service = channel.map_err(|e| UpstreamError(e.into()));
        Ok(Self::over(BoxCloneSyncService::new(service)))
    }

    fn over(service: GrpcService) -> Self {
        Self(Arc::new(Clients {
            service: service.clone(),
            health: HealthClient::new(service),
        }))
    }
}
