//! `grpc.health.v1`, kept in step with the store.
//!
//! Each service reports SERVING only while the store answers pings; load
//! balancers and orchestrators then route around a replica that lost its
//! store, and back to it once it recovers, without anyone restarting it. On
//! shutdown both turn NOT_SERVING before requests are drained, so traffic
//! moves away while in-flight calls finish.

use std::sync::Arc;
use std::time::Duration;

use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc::status::error_chain;
use crate::grpc::{AllocationApi, FleetApi};
use crate::proto::v1::allocation_service_server::AllocationServiceServer;
use crate::proto::v1::fleet_service_server::FleetServiceServer;
use crate::storage::Store;

/// The services whose health is reported; "" is the server as a whole.
const SERVICES: [&str; 3] = [
    "",
    <AllocationServiceServer<AllocationApi> as NamedService>::NAME,
    <FleetServiceServer<FleetApi> as NamedService>::NAME,
];

/// Sets the health of every service at once.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Self { reporter }
    }

    /// Reports every service as `status`.
    pub async fn set(&self, status: ServingStatus) {
        for service in SERVICES {
            self.reporter.set_service_status(service, status).await;
            crate::metrics::health(service, status == ServingStatus::Serving);
        }
    }
}

/// Whether the store answers a ping within `timeout`; logs why not.
pub async fn store_is_reachable(store: &dyn Store, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error_chain(&error)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Pings the store every `interval` and reports the outcome, logging only
/// the changes. Runs until aborted.
pub async fn monitor(store: Arc<dyn Store>, health: Health, interval: Duration, mut serving: bool) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let check = store_is_reachable(store.as_ref(), interval).await;
        match (&check, serving) {
            (Ok(()), false) => {
                tracing::info!("store reachable again; reporting SERVING");
                health.set(ServingStatus::Serving).await;
            }
            (Err(why), true) => {
                tracing::error!(error = %why, "store unreachable; reporting NOT_SERVING");
                health.set(ServingStatus::NotServing).await;
            }
            _ => {}
        }
        serving = check.is_ok();
    }
}
