//! The application: the store, the gRPC services and the REST gateway, and
//! the servers that host them, built from [`Settings`].
//!
//! `build` binds the listeners before returning, so a caller (a test, most
//! often) can ask for port 0 and learn the real ports before serving starts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::auth::rate::RateLimiter;
use crate::auth::{AuthSetupError, Authenticator};
use crate::cache::CacheError;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::gateway::{self, Upstream, UpstreamSetupError};
use crate::grpc::{AllocationApi, EdgeLayer, EventApi, FleetApi, GrpcMetricsLayer, ServiceContext};
use crate::health::{self, Health};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::v1::allocation_service_server::AllocationServiceServer;
use crate::proto::v1::event_service_server::EventServiceServer;
use crate::proto::v1::fleet_service_server::FleetServiceServer;
use crate::seed::{self, SeedError, SeedPlan};
use crate::server::{Connections, grpc_incoming};
use crate::storage::{self, OpenError, Store, StoreConfig};
use crate::tls::{TlsConfigs, TlsError};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    OpenStore(#[from] OpenError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot seed the demo data: {0}")]
    Demo(#[from] SeedError),
    #[error("cannot listen on {addr}: {source}; {hint}", hint = bind_hint(*.addr, *.listener, .source))]
    Bind {
        addr: SocketAddr,
        listener: Listener,
        source: std::io::Error,
    },
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("invalid gRPC upstream: {0}")]
    Upstream(#[from] UpstreamSetupError),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "refusing to serve without authentication on {addr}, which is not a loopback address: \
         configure AUTH_JWT_HS256_SECRET, AUTH_JWT_JWKS_FILE or AUTH_JWT_JWKS_URL (bearer tokens), \
         AUTH_API_KEYS_FILE (API keys) or TLS_CLIENT_CA_FILE (client certificates), \
         or set ALLOW_UNAUTHENTICATED=true to let every caller act as an anonymous fleet_admin"
    )]
    Unprotected { addr: SocketAddr },
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the HTTP server failed: {0}")]
    ServeHttp(std::io::Error),
}

/// The gRPC half: absent in gateway-only mode.
struct GrpcPart {
    ctx: ServiceContext,
    routes: Routes,
    edge: EdgeLayer,
    metrics: GrpcMetricsLayer,
    health: Health,
    /// Whether the store answered at startup, as health reports it.
    serving: bool,
    listener: TcpListener,
    addr: SocketAddr,
}

/// A service ready to serve: store open, listeners bound.
pub struct Application {
    settings: Settings,
    grpc: Option<GrpcPart>,
    /// Absent in gateway-only mode, where the upstream authenticates.
    auth: Option<Arc<Authenticator>>,
    limiter: Option<Arc<RateLimiter>>,
    tls: Option<Arc<TlsConfigs>>,
    http_listener: TcpListener,
    http_addr: SocketAddr,
    http_router: axum::Router,
    /// The metrics' renderer, when metrics are on.
    metrics: Option<PrometheusHandle>,
    /// The listener of `/metrics` alone (`METRICS_ADDR`).
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    /// Turned true when shutdown begins; handed to the servers, the
    /// background tasks and the event streams.
    stop: watch::Sender<bool>,
}

/// Which listener an address is for, so a bind failure names the setting
/// to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Grpc,
    Http,
    Metrics,
}

impl Listener {
    /// The environment variable and the flag that set its address.
    pub fn setting(self) -> (&'static str, &'static str) {
        match self {
            Listener::Grpc => ("GRPC_ADDR", "--grpc-addr"),
            Listener::Http => ("HTTP_ADDR", "--http-addr"),
            Listener::Metrics => ("METRICS_ADDR", "--metrics-addr"),
        }
    }
}

/// What to do about a bind failure: a newcomer whose port 8080 is taken
/// should learn which setting moves the service elsewhere.
fn bind_hint(addr: SocketAddr, listener: Listener, error: &std::io::Error) -> String {
    let (variable, flag) = listener.setting();
    let cause = match error.kind() {
        std::io::ErrorKind::AddrInUse => "another process is using that port; ",
        _ => "",
    };
    let mut other = addr;
    other.set_port(addr.port().checked_add(1).unwrap_or(1024));
    format!("{cause}set {variable} or pass {flag} to listen elsewhere, e.g. {flag} {other}")
}

async fn bind(addr: SocketAddr, which: Listener) -> Result<(TcpListener, SocketAddr), AppError> {
    let bind_error = |source| AppError::Bind {
        addr,
        listener: which,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

impl Application {
    /// The production wiring: the configured store and the system clock; or,
    /// with `grpc_upstream`, the gateway alone.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        crate::tls::install_default_provider();
        // Before the store opens, so that its writer and pool record too.
        if settings.metrics.enabled {
            crate::metrics::install();
        }
        if let Some(url) = settings.grpc_upstream.clone() {
            // The gateway passes credentials on and decides nothing: whether
            // callers are checked is up to the upstream.
            if !settings.http_addr.ip().is_loopback() && upstream_is_local(&url) {
                tracing::warn!(
                    http_addr = %settings.http_addr,
                    "the gateway is reachable from other hosts and relays to a gRPC server on this host: \
                     unless that server authenticates callers, everyone reaching the gateway acts as its anonymous fleet_admin"
                );
            }
            let upstream = Upstream::remote(
                &url,
                settings.gateway.request_timeout,
                &settings.upstream_tls,
            )?;
            let tls = settings.tls.clone().map(TlsConfigs::load).transpose()?;
            let (stop, _) = watch::channel(false);
            // The gateway alone has no callers' credentials to check: its
            // /metrics is public unless the gateway's own settings name
            // some authentication.
            let open = settings.auth.jwt.is_none()
                && settings.auth.api_keys_file.is_none()
                && settings
                    .tls
                    .as_ref()
                    .is_none_or(|tls| tls.client_ca_file.is_none());
            return Self::with_parts(
                settings,
                None,
                upstream,
                tls,
                Arc::new(SystemClock),
                stop,
                open,
            )
            .await;
        }
        // Before the store is opened: a bad key file or certificate is
        // reported without touching the data.
        check_files(&settings).await?;
        let store = storage::open_checked(&settings.store, settings.integrity_check).await?;
        if matches!(settings.store, StoreConfig::Mongo(_))
            && settings.cache.redis.is_none()
            && !settings.cache.ttl.is_zero()
        {
            tracing::warn!(
                "MongoDB with the in-process cache: replicas do not see each other's writes in \
                 their caches for up to CACHE_TTL; set REDIS_URL (or CACHE_TTL=0) when running \
                 more than one replica"
            );
        }
        let setup = storage::with_cache(store, &settings.cache)?;
        if let Some(cache) = &setup.cache {
            cache.log_stats_every(settings.cache.stats_interval);
        }
        Self::build_with(settings, setup.store, Arc::new(SystemClock)).await
    }

    /// Both servers, with a given store and clock.
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        crate::tls::install_default_provider();
        if settings.metrics.enabled {
            crate::metrics::install();
        }
        let tls = settings.tls.clone().map(TlsConfigs::load).transpose()?;
        let client_certificates = tls
            .as_ref()
            .is_some_and(|tls| tls.settings().client_ca_file.is_some());
        let auth = Arc::new(Authenticator::open(&settings.auth, client_certificates).await?);
        if auth.is_open() {
            let exposed = [settings.grpc_addr, settings.http_addr]
                .into_iter()
                .find(|addr| !addr.ip().is_loopback());
            match exposed {
                Some(addr) if !settings.auth.allow_unauthenticated => {
                    return Err(AppError::Unprotected { addr });
                }
                Some(addr) => tracing::warn!(
                    %addr,
                    "no authentication configured and ALLOW_UNAUTHENTICATED=true: every caller acts as an anonymous fleet_admin"
                ),
                None => tracing::warn!(
                    "no authentication configured: every caller acts as an anonymous fleet_admin (the listeners are on loopback only)"
                ),
            }
        }
        warn_about_weak_setups(&settings, client_certificates);
        let limiter = settings
            .auth
            .rate_limit
            .map(|limit| Arc::new(RateLimiter::new(limit)));
        let edge = EdgeLayer::new(
            Arc::clone(&auth),
            limiter.clone(),
            Arc::clone(&clock),
            &settings.limits,
        );
        let ctx = ServiceContext {
            store,
            clock,
            policy: settings.policy,
            page_key: Arc::new(tokio::sync::OnceCell::new_with(
                settings
                    .page_token_key
                    .as_deref()
                    .map(crate::domain::PageKey::from_secret),
            )),
        };
        if settings.demo {
            seed_demo(&ctx).await?;
        }
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Lets reflection clients decode the google.rpc error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let (stop, stopping) = watch::channel(false);
        let mut routes = Routes::new(health_service);
        if settings.reflection {
            routes = routes
                .add_service(reflection().build_v1()?)
                .add_service(reflection().build_v1alpha()?);
        }
        let routes = routes
            .add_service(AllocationServiceServer::new(AllocationApi::new(
                ctx.clone(),
            )))
            .add_service(FleetServiceServer::new(FleetApi::new(ctx.clone())))
            .add_service(EventServiceServer::new(EventApi::new(
                ctx.clone(),
                stopping,
                settings.events,
            )));
        // Health is known before anything is served, so no caller ever
        // sees a service as unknown.
        let health = Health::new(reporter);
        let interval = settings.health_check_interval;
        let reachable = health::store_is_reachable(ctx.store.as_ref(), interval).await;
        if let Err(why) = &reachable {
            tracing::error!(error = %why, "store unreachable at startup; reporting NOT_SERVING");
        }
        health
            .set(match reachable {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            })
            .await;
        let (listener, addr) = bind(settings.grpc_addr, Listener::Grpc).await?;
        let grpc_metrics = GrpcMetricsLayer::new(&[
            FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]);
        let grpc = GrpcPart {
            ctx,
            routes: routes.clone(),
            edge: edge.clone(),
            metrics: grpc_metrics.clone(),
            health,
            serving: reachable.is_ok(),
            listener,
            addr,
        };
        let upstream = Upstream::in_process(routes, edge, grpc_metrics);
        let clock = Arc::clone(&grpc.ctx.clock);
        let open = auth.is_open();
        let mut app =
            Self::with_parts(settings, Some(grpc), upstream, tls, clock, stop, open).await?;
        app.auth = Some(auth);
        app.limiter = limiter;
        Ok(app)
    }

    async fn with_parts(
        settings: Settings,
        grpc: Option<GrpcPart>,
        upstream: Upstream,
        tls: Option<Arc<TlsConfigs>>,
        clock: Arc<dyn Clock>,
        stop: watch::Sender<bool>,
        open: bool,
    ) -> Result<Self, AppError> {
        let (http_listener, http_addr) = bind(settings.http_addr, Listener::Http).await?;
        let policy = settings.policy;
        let today: gateway::Today = Arc::new(move || policy.today(clock.now()));
        let metrics = crate::metrics::handle().filter(|_| settings.metrics.enabled);
        // Anyone reaching the REST port may read /metrics only while no one
        // is asked for credentials there.
        let public_metrics = metrics.clone().filter(|_| open);
        let http_router = gateway::router(upstream, &settings.gateway, today, public_metrics);
        let metrics_listener = match (&metrics, settings.metrics.addr) {
            (Some(_), Some(addr)) => Some(bind(addr, Listener::Metrics).await?),
            _ => None,
        };
        Ok(Self {
            settings,
            grpc,
            auth: None,
            limiter: None,
            tls,
            http_listener,
            http_addr,
            http_router,
            metrics,
            metrics_listener,
            stop,
        })
    }

    /// The address gRPC is served on (with the real port when 0 was asked);
    /// `None` in gateway-only mode.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|grpc| grpc.addr)
    }

    /// The address the REST gateway is served on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address `/metrics` alone is served on (`METRICS_ADDR`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until `shutdown` completes. Then health turns NOT_SERVING,
    /// both servers stop accepting connections, and in-flight requests get
    /// up to the shutdown timeout to finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            settings,
            grpc,
            auth,
            limiter,
            tls,
            http_listener,
            http_addr,
            http_router,
            metrics,
            metrics_listener,
            stop,
        } = self;
        let stopping = stop.subscribe();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stopped = |mut stopping: watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };

        background::spawn(auth.clone(), limiter, tls.clone(), stopping.clone());
        if let Some(grpc) = &grpc {
            background::prune_events(
                Arc::clone(&grpc.ctx.store),
                Arc::clone(&grpc.ctx.clock),
                settings.events,
                stopping.clone(),
            );
        }

        if let Some(handle) = &metrics {
            tokio::spawn(crate::metrics::upkeep(handle.clone(), stopping.clone()));
        }
        let metrics_server = {
            let stopping = stopping.clone();
            let limits = settings.limits;
            async move {
                if let (Some(handle), Some((listener, addr))) = (metrics, metrics_listener) {
                    tracing::info!(metrics_addr = %addr, "serving /metrics");
                    let connections = Connections::new(listener, limits.max_connections, "metrics");
                    crate::server::serve_http(
                        connections,
                        None,
                        gateway::metrics_router(handle),
                        limits,
                        stopping,
                    )
                    .await;
                }
            }
        };

        let interval = settings.health_check_interval;
        let limits = settings.limits;
        let grpc_server = {
            let stopping = stopping.clone();
            let tls = tls.clone();
            async move {
                match grpc {
                    Some(grpc) => serve_grpc(grpc, tls, interval, limits, stopping).await,
                    None => Ok(()),
                }
            }
        };
        tracing::info!(%http_addr, tls = tls.is_some(), "serving the REST gateway (docs at /docs)");
        let connections =
            crate::server::Connections::new(http_listener, settings.limits.max_connections, "HTTP");
        let http_server = crate::server::serve_http(
            connections,
            tls.clone(),
            http_router,
            settings.limits,
            stopping.clone(),
        );
        let timeout = settings.shutdown_timeout;
        let deadline = async move {
            stopped(stopping).await;
            tokio::time::sleep(timeout).await;
        };
        let result = tokio::select! {
            results = async { tokio::join!(grpc_server, http_server, metrics_server) } => results.0,
            () = deadline => {
                tracing::warn!(?timeout, "requests still running after the shutdown timeout; stopping");
                Ok(())
            }
        };
        tracing::info!("stopped");
        result
    }
}

/// Serves gRPC until `stopped`, keeping health in step with the store.
async fn serve_grpc(
    grpc: GrpcPart,
    tls: Option<Arc<TlsConfigs>>,
    interval: std::time::Duration,
    limits: crate::server::ServerLimits,
    stopping: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let GrpcPart {
        ctx,
        routes,
        edge,
        health,
        serving,
        listener,
        addr,
        metrics,
    } = grpc;
    let monitor = tokio::spawn(health::monitor(
        Arc::clone(&ctx.store),
        health.clone(),
        interval,
        serving,
    ));
    let stop_monitor = monitor.abort_handle();
    let mut signal_stopping = stopping.clone();
    let signal = async move {
        let _ = signal_stopping.wait_for(|stop| *stop).await;
        stop_monitor.abort();
        health.set(ServingStatus::NotServing).await;
        tracing::info!("shutting down: NOT_SERVING, draining in-flight requests");
    };

    tracing::info!(grpc_addr = %addr, tls = tls.is_some(), "serving gRPC");
    let server = Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .layer(metrics)
        .layer(edge)
        .add_routes(routes);
    let connections = Connections::new(listener, limits.max_connections, "gRPC");
    let served = match tls {
        Some(tls) => {
            let upgrade = crate::server::tls_upgrade(tls, limits.header_timeout);
            let incoming = grpc_incoming(connections, limits, stopping, upgrade);
            server.serve_with_incoming_shutdown(incoming, signal).await
        }
        // HTTP/2 writes headers, data and trailers separately; Nagle's
        // algorithm is off on every accepted connection, or a response of
        // more than a packet would wait ~40 ms for the client's delayed ACK.
        None => {
            let plain = |tcp| Box::pin(async move { Some(tcp) }) as _;
            let incoming = grpc_incoming(connections, limits, stopping, plain);
            server.serve_with_incoming_shutdown(incoming, signal).await
        }
    };
    monitor.abort();
    served.map_err(AppError::from)
}

/// Whether a gRPC upstream URL names this host.
fn upstream_is_local(url: &str) -> bool {
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_default();
    let host = host.trim_matches(|c| c == '[' || c == ']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Setups that work but that an operator should hear about.
fn warn_about_weak_setups(settings: &Settings, client_certificates: bool) {
    use crate::auth::jwt::KeySource;
    let exposed = [settings.grpc_addr, settings.http_addr]
        .iter()
        .any(|addr| !addr.ip().is_loopback());
    if let Some(jwt) = &settings.auth.jwt {
        match jwt.keys {
            KeySource::Hs256(_) if exposed => tracing::warn!(
                "HS256 tokens on a non-loopback address: anyone with AUTH_JWT_HS256_SECRET can mint any token; \
                 use a JWKS from an identity provider in production"
            ),
            KeySource::JwksFile(_) | KeySource::JwksUrl(_)
                if jwt.issuer.is_none() || jwt.audience.is_none() =>
            {
                tracing::warn!(
                    "a JWKS without AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE accepts tokens the provider issued for any other application"
                )
            }
            _ => {}
        }
    }
    if client_certificates && settings.auth.api_keys_file.is_none() {
        tracing::warn!(
            "TLS_CLIENT_CA_FILE without AUTH_API_KEYS_FILE: client certificates authenticate but have no roles ([[client_cert]] entries give them)"
        );
    }
}

/// Checks the TLS and key files before anything else is opened.
async fn check_files(settings: &Settings) -> Result<(), AppError> {
    if let Some(tls) = settings.tls.clone() {
        TlsConfigs::load(tls)?;
    }
    if let Some(path) = &settings.auth.api_keys_file {
        crate::auth::keys::KeyFile::load(path).map_err(AuthSetupError::from)?;
    }
    if let Some(jwt) = &settings.auth.jwt
        && matches!(jwt.keys, crate::auth::jwt::KeySource::JwksFile(_))
    {
        crate::auth::jwt::JwtVerifier::open(jwt.clone())
            .await
            .map_err(AuthSetupError::from)?;
    }
    Ok(())
}

/// The tasks that run beside the servers, each ending on shutdown.
mod background {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;

    use crate::auth::Authenticator;
    use crate::auth::rate::RateLimiter;
    use crate::tls::TlsConfigs;

    /// Events deleted per pruning call: each holds the writer briefly.
    const PRUNE_BATCH: usize = 500;

    /// After each pruning call, a pause this many times as long as the call
    /// took: pruning a long backlog (the first start after loading years
    /// of history) takes at most a tenth of the writer's time, and the
    /// requests queued behind a call wait for one call only.
    const PRUNE_PAUSE_FACTOR: u32 = 9;

    /// Deletes the events older than the retention, at startup and then
    /// every `prune_interval`, until shutdown.
    pub fn prune_events(
        store: Arc<dyn crate::storage::Store>,
        clock: Arc<dyn crate::clock::Clock>,
        events: crate::grpc::events::EventSettings,
        mut stopping: watch::Receiver<bool>,
    ) {
        tokio::spawn(async move {
            loop {
                let cutoff = clock.now() - events.retention;
                let mut pruned = 0;
                loop {
                    if *stopping.borrow() {
                        return;
                    }
                    let started = std::time::Instant::now();
                    match store.prune_events(cutoff, PRUNE_BATCH).await {
                        Ok(deleted) => {
                            pruned += deleted;
                            if deleted < PRUNE_BATCH as u64 {
                                break;
                            }
                            let pause = started.elapsed() * PRUNE_PAUSE_FACTOR;
                            tokio::select! {
                                _ = stopping.wait_for(|stop| *stop) => return,
                                () = tokio::time::sleep(pause) => {}
                            }
                        }
                        Err(error) => {
                            tracing::warn!(error = %crate::storage::error_chain(&error), "pruning old events failed; retrying later");
                            break;
                        }
                    }
                }
                if pruned > 0 {
                    tracing::info!(pruned, %cutoff, "pruned events older than the retention");
                }
                tokio::select! {
                    _ = stopping.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(events.prune_interval) => {}
                }
            }
        });
    }

    pub fn spawn(
        auth: Option<Arc<Authenticator>>,
        limiter: Option<Arc<RateLimiter>>,
        tls: Option<Arc<TlsConfigs>>,
        stopping: watch::Receiver<bool>,
    ) {
        let stopped = || {
            let mut stopping = stopping.clone();
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }
        };
        if let Some(jwt) = auth.as_ref().and_then(|auth| auth.jwt())
            && jwt.has_url()
        {
            tokio::spawn(jwt.refresh_every(stopped()));
        }
        if let Some(limiter) = limiter {
            let stopped = stopped();
            tokio::spawn(async move {
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        () = &mut stopped => return,
                        () = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
                    }
                }
            });
        }
        // Always: SIGHUP's default action would end the process.
        tokio::spawn(reload_on_hangup(auth, tls, stopped()));
    }

    /// Re-reads the key files and certificates on SIGHUP; a file that no
    /// longer loads is reported and the old one stays in force.
    async fn reload_on_hangup(
        auth: Option<Arc<Authenticator>>,
        tls: Option<Arc<TlsConfigs>>,
        stopped: impl Future<Output = ()>,
    ) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => return tracing::error!(%error, "cannot listen for SIGHUP"),
            };
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => return,
                    received = hangups.recv() => if received.is_none() { return },
                }
                tracing::info!("received SIGHUP: reloading keys and certificates");
                for error in auth.iter().flat_map(|auth| auth.reload()) {
                    tracing::error!(%error, "keeping the keys in force");
                }
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => tracing::info!("reloaded the TLS certificates"),
                        Err(error) => {
                            tracing::error!(%error, "keeping the TLS certificates in force")
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (auth, tls);
            stopped.await;
        }
    }
}

/// Seeds the demo data set into an empty store; leaves a store with data as
/// it is.
async fn seed_demo(ctx: &ServiceContext) -> Result<(), SeedError> {
    if !ctx.store.is_empty().await? {
        tracing::info!("store already holds data; not seeding the demo data");
        return Ok(());
    }
    let plan = SeedPlan::default();
    let report = seed::seed(ctx.store.as_ref(), &plan, &ctx.policy, ctx.now(), false).await?;
    tracing::info!(
        employees = report.employees,
        vehicles = report.vehicles,
        allocations = report.allocations,
        seed = plan.seed,
        "seeded demo data"
    );
    Ok(())
}
