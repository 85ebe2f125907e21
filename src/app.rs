//! The application: the store, the gRPC services and the server that hosts
//! them, built from [`Settings`].
//!
//! `build` binds the listener before returning, so a caller (a test, most
//! often) can ask for port 0 and learn the real port before serving starts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::grpc::{AllocationApi, FleetApi, RequestLogLayer, ServiceContext};
use crate::health::{self, Health};
use crate::proto::FILE_DESCRIPTOR_SET;
use crate::proto::v1::allocation_service_server::AllocationServiceServer;
use crate::proto::v1::fleet_service_server::FleetServiceServer;
use crate::seed::{self, SeedError, SeedPlan};
use crate::storage::Store;
use crate::storage::sqlite::{OpenError, SqliteStore};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    OpenStore(#[from] OpenError),
    #[error("cannot seed the demo data: {0}")]
    Demo(#[from] SeedError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A service ready to serve: store open, listener bound.
pub struct Application {
    settings: Settings,
    ctx: ServiceContext,
    listener: TcpListener,
    grpc_addr: SocketAddr,
}

impl Application {
    /// The production wiring: the embedded store in `settings.data_dir` and
    /// the system clock.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        let store = SqliteStore::open(&settings.data_dir)?;
        Self::build_with(settings, Arc::new(store), Arc::new(SystemClock)).await
    }

    /// Wiring with a given store and clock.
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
        let listener = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: settings.grpc_addr,
                source,
            })?;
        let grpc_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: settings.grpc_addr,
            source,
        })?;
        Ok(Self {
            settings,
            ctx,
            listener,
            grpc_addr,
        })
    }

    /// The address gRPC is served on (with the real port when 0 was asked).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Serves until `shutdown` completes, then reports NOT_SERVING, stops
    /// accepting connections and lets in-flight requests finish for up to
    /// the shutdown timeout.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let Self {
            settings,
            ctx,
            listener,
            grpc_addr,
        } = self;

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = Health::new(reporter);
        let reachable =
            health::store_is_reachable(ctx.store.as_ref(), settings.health_check_interval).await;
        if let Err(why) = &reachable {
            tracing::error!(error = %why, "store unreachable at startup; reporting NOT_SERVING");
        }
        health
            .set(match reachable {
                Ok(()) => ServingStatus::Serving,
                Err(_) => ServingStatus::NotServing,
            })
            .await;
        let monitor = tokio::spawn(health::monitor(
            Arc::clone(&ctx.store),
            health.clone(),
            settings.health_check_interval,
            reachable.is_ok(),
        ));

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // Lets reflection clients decode the google.rpc error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let (draining, drain_started) = oneshot::channel::<()>();
        let stop_monitor = monitor.abort_handle();
        let signal = async move {
            shutdown.await;
            stop_monitor.abort();
            health.set(ServingStatus::NotServing).await;
            tracing::info!("shutting down: NOT_SERVING, draining in-flight requests");
            let _ = draining.send(());
        };

        tracing::info!(%grpc_addr, "serving gRPC");
        let server = Server::builder()
            .layer(RequestLogLayer)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(AllocationServiceServer::new(AllocationApi::new(
                ctx.clone(),
            )))
            .add_service(FleetServiceServer::new(FleetApi::new(ctx)))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);

        let timeout = settings.shutdown_timeout;
        let deadline = async move {
            match drain_started.await {
                Ok(()) => tokio::time::sleep(timeout).await,
                Err(_) => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            result = server => result.map_err(AppError::from),
            () = deadline => {
                tracing::warn!(?timeout, "requests still running after the shutdown timeout; stopping");
                Ok(())
            }
        };
        monitor.abort();
        tracing::info!("stopped");
        result
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
