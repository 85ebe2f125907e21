//! The application: the store, the gRPC services and the REST gateway, and
//! the servers that host them, built from [`Settings`].
//!
//! `build` binds the listeners before returning, so a caller (a test, most
//! often) can ask for port 0 and learn the real ports before serving starts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::cache::CacheError;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::gateway::{self, Upstream};
use crate::grpc::{AllocationApi, FleetApi, RequestLogLayer, ServiceContext};
use crate::health::{self, Health};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::v1::allocation_service_server::AllocationServiceServer;
use crate::proto::v1::fleet_service_server::FleetServiceServer;
use crate::seed::{self, SeedError, SeedPlan};
use crate::storage::{self, OpenError, Store, StoreConfig};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    OpenStore(#[from] OpenError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("cannot seed the demo data: {0}")]
    Demo(#[from] SeedError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("invalid gRPC upstream: {0}")]
    Upstream(tonic::transport::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the HTTP server failed: {0}")]
    ServeHttp(std::io::Error),
}

/// The gRPC half: absent in gateway-only mode.
struct GrpcPart {
    ctx: ServiceContext,
    routes: Routes,
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
    http_listener: TcpListener,
    http_addr: SocketAddr,
    http_router: axum::Router,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AppError> {
    let bind_error = |source| AppError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

impl Application {
    /// The production wiring: the configured store and the system clock; or,
    /// with `grpc_upstream`, the gateway alone.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        if let Some(url) = settings.grpc_upstream.clone() {
            let upstream = Upstream::remote(&url, settings.gateway.request_timeout)
                .map_err(AppError::Upstream)?;
            return Self::with_parts(settings, None, upstream).await;
        }
        let store = storage::open(&settings.store).await?;
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
        let ctx = ServiceContext {
            store,
            clock,
            policy: settings.policy,
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
        let routes = Routes::new(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(AllocationServiceServer::new(AllocationApi::new(
                ctx.clone(),
            )))
            .add_service(FleetServiceServer::new(FleetApi::new(ctx.clone())));
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
        let (listener, addr) = bind(settings.grpc_addr).await?;
        let grpc = GrpcPart {
            ctx,
            routes: routes.clone(),
            health,
            serving: reachable.is_ok(),
            listener,
            addr,
        };
        Self::with_parts(settings, Some(grpc), Upstream::in_process(routes)).await
    }

    async fn with_parts(
        settings: Settings,
        grpc: Option<GrpcPart>,
        upstream: Upstream,
    ) -> Result<Self, AppError> {
        let (http_listener, http_addr) = bind(settings.http_addr).await?;
        let http_router = gateway::router(upstream, &settings.gateway);
        Ok(Self {
            settings,
            grpc,
            http_listener,
            http_addr,
            http_router,
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
            http_listener,
            http_addr,
            http_router,
        } = self;
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let stopped = |mut stopping: watch::Receiver<bool>| async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };

        let interval = settings.health_check_interval;
        let grpc_server = {
            let stopping = stopping.clone();
            async move {
                match grpc {
                    Some(grpc) => serve_grpc(grpc, interval, stopped(stopping)).await,
                    None => Ok(()),
                }
            }
        };
        tracing::info!(%http_addr, "serving the REST gateway (docs at /docs)");
        let http_stopped = stopped(stopping.clone());
        let http_server = async {
            // No Nagle delay: a response must not wait for the client's ACK.
            let listener = http_listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, http_router)
                .with_graceful_shutdown(http_stopped)
                .await
                .map_err(AppError::ServeHttp)
        };

        let timeout = settings.shutdown_timeout;
        let deadline = async move {
            stopped(stopping).await;
            tokio::time::sleep(timeout).await;
        };
        let result = tokio::select! {
            results = async { tokio::join!(grpc_server, http_server) } => results.0.and(results.1),
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
    interval: std::time::Duration,
    stopped: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let GrpcPart {
        ctx,
        routes,
        health,
        serving,
        listener,
        addr,
    } = grpc;
    let monitor = tokio::spawn(health::monitor(
        Arc::clone(&ctx.store),
        health.clone(),
        interval,
        serving,
    ));
    let stop_monitor = monitor.abort_handle();
    let signal = async move {
        stopped.await;
        stop_monitor.abort();
        health.set(ServingStatus::NotServing).await;
        tracing::info!("shutting down: NOT_SERVING, draining in-flight requests");
    };

    tracing::info!(grpc_addr = %addr, "serving gRPC");
    let served = Server::builder()
        .layer(RequestLogLayer)
        .add_routes(routes)
        // HTTP/2 writes headers, data and trailers separately; with Nagle's
        // algorithm on, a response of more than a packet waits ~40 ms for
        // the client's delayed ACK.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal)
        .await;
    monitor.abort();
    served.map_err(AppError::from)
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
