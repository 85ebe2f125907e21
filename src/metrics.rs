//! Prometheus metrics, recorded through the `metrics` facade and rendered by
//! `metrics-exporter-prometheus` at `GET /metrics`.
//!
//! The recorder is one per process, installed by [`install`] before the
//! store and the servers are built; until then (and when metrics are turned
//! off) every recording is a no-op. The gRPC server metrics carry the names
//! and labels of go-grpc-prometheus, so the usual dashboards work; the
//! service's own metrics are prefixed `vehicle_allocation_`. No label takes
//! a value a caller chooses: methods, routes, reasons and operations all
//! come from fixed lists.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

mod local;

pub use local::{LocalCounter, LocalHistogram};

pub const GRPC_STARTED: &str = "grpc_server_started_total";
pub const GRPC_HANDLED: &str = "grpc_server_handled_total";
pub const GRPC_HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
pub const HTTP_REQUESTS: &str = "http_server_requests_total";
pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const STORE_DURATION: &str = "vehicle_allocation_store_operation_duration_seconds";
pub const STORE_ERRORS: &str = "vehicle_allocation_store_operation_errors_total";
pub const WRITER_BATCH: &str = "vehicle_allocation_store_writer_batch_size";
pub const WRITER_QUEUE: &str = "vehicle_allocation_store_writer_queue_depth";
pub const MONGO_CHECKOUTS: &str = "vehicle_allocation_mongodb_pool_checkouts_total";
pub const MONGO_CHECKOUT_FAILURES: &str = "vehicle_allocation_mongodb_pool_checkout_failures_total";
pub const MONGO_TRANSACTION_ATTEMPTS: &str = "vehicle_allocation_mongodb_transaction_attempts";
pub const CACHE_REQUESTS: &str = "vehicle_allocation_cache_requests_total";
pub const CACHE_DEGRADED: &str = "vehicle_allocation_cache_degraded";
pub const REDIS_DURATION: &str = "vehicle_allocation_cache_redis_call_duration_seconds";
pub const BOOKINGS_CREATED: &str = "vehicle_allocation_bookings_created_total";
pub const BOOKINGS_CHANGED: &str = "vehicle_allocation_bookings_changed_total";
pub const BOOKINGS_CANCELLED: &str = "vehicle_allocation_bookings_cancelled_total";
pub const REFUSALS: &str = "vehicle_allocation_refusals_total";
pub const HEALTH: &str = "vehicle_allocation_health_status";
pub const BUILD_INFO: &str = "vehicle_allocation_build_info";
pub const IN_FLIGHT: &str = "vehicle_allocation_requests_in_flight";
pub const STREAMS_OPEN: &str = "vehicle_allocation_event_streams_open";

/// Upper bounds of the latency buckets, in seconds: from a cached read
/// (tens of microseconds) to a call near its deadline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Requests per group commit: one up to the writer's largest batch.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Tries per committed MongoDB transaction: 1 without contention; the
/// upper buckets show the event counter's conflicts.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 13.0];

/// How often histogram samples are folded into their buckets, so that a
/// service nobody scrapes does not keep every sample in memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder, once, and returns the handle that
/// renders it. A later call returns the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(WRITER_BATCH.into()), BATCH_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(MONGO_TRANSACTION_ATTEMPTS.into()),
                        ATTEMPT_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Whether [`install`] ran: until then recording is a no-op.
fn installed() -> bool {
    HANDLE.get().is_some()
}

/// Every metric in Prometheus's text format, with every thread's buffered
/// updates in it.
pub fn render(handle: &PrometheusHandle) -> String {
    local::flush();
    handle.render()
}

/// The installed recorder's handle, if [`install`] ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// Hands on the threads' buffered updates and folds histogram samples into
/// buckets every few seconds until `stopping`.
pub async fn upkeep(handle: PrometheusHandle, mut stopping: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                local::flush();
                handle.run_upkeep();
            }
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

fn describe() {
    describe_counter!(GRPC_STARTED, "RPCs started on the server.");
    describe_counter!(
        GRPC_HANDLED,
        "RPCs completed on the server, regardless of success or failure."
    );
    describe_histogram!(
        GRPC_HANDLING_SECONDS,
        Unit::Seconds,
        "Time from an RPC's arrival to its status, as the server saw it."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "REST requests answered, by method, matched route template and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time from a REST request's arrival to its response headers."
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Time the store took for an operation, by backend and operation."
    );
    describe_counter!(
        STORE_ERRORS,
        "Store operations that failed for a storage reason (not a rule), by backend and operation."
    );
    describe_histogram!(
        WRITER_BATCH,
        "Write requests committed together by the embedded store's writer (group commit)."
    );
    describe_gauge!(
        WRITER_QUEUE,
        "Write requests waiting for the embedded store's writer."
    );
    describe_counter!(
        MONGO_CHECKOUTS,
        "Connections checked out of the MongoDB driver's pool."
    );
    describe_counter!(
        MONGO_CHECKOUT_FAILURES,
        "Connection checkouts from the MongoDB driver's pool that failed, by reason."
    );
    describe_histogram!(
        MONGO_TRANSACTION_ATTEMPTS,
        "Attempts each MongoDB transaction took, committed or not, by operation (booking, fleet, seed)."
    );
    describe_counter!(
        CACHE_REQUESTS,
        "Cached reads by backend, kind of entry and result (hit, miss, error, bypass)."
    );
    describe_gauge!(
        CACHE_DEGRADED,
        "1 while the cache backend is failing and reads go to the store, 0 when healthy."
    );
    describe_histogram!(
        REDIS_DURATION,
        Unit::Seconds,
        "Time of one call to Redis, by operation."
    );
    describe_counter!(BOOKINGS_CREATED, "Bookings created (replays not counted).");
    describe_counter!(BOOKINGS_CHANGED, "Bookings changed by an update.");
    describe_counter!(BOOKINGS_CANCELLED, "Bookings cancelled.");
    describe_counter!(
        REFUSALS,
        "Errors answered, by their reason in the error catalogue."
    );
    describe_gauge!(
        HEALTH,
        "1 while a service reports SERVING on grpc.health.v1, 0 otherwise; \"server\" is the whole server."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is in the label.");
    describe_gauge!(
        IN_FLIGHT,
        "Requests being handled, against MAX_IN_FLIGHT_REQUESTS (health and reflection not counted)."
    );
    describe_gauge!(
        STREAMS_OPEN,
        "Event streams (WatchEvents and SSE) open, against MAX_WATCH_STREAMS."
    );
}

/// The gauge of requests in flight.
pub fn requests_in_flight() -> metrics::Gauge {
    gauge!(IN_FLIGHT)
}

/// The gauge of open event streams.
pub fn event_streams_open() -> metrics::Gauge {
    gauge!(STREAMS_OPEN)
}

/// `held` counted in a gauge while it lives.
pub struct Gauged<T> {
    _held: T,
    gauge: metrics::Gauge,
}

impl<T> Gauged<T> {
    pub fn new(held: T, gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self {
            _held: held,
            gauge: gauge.clone(),
        }
    }
}

impl<T> Drop for Gauged<T> {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// One REST request: `route` is the matched template.
pub fn http_request(method: &'static str, route: String, status: http::StatusCode, took: Duration) {
    let labels = vec![
        metrics::Label::new("method", method),
        metrics::Label::new("route", route),
        metrics::Label::new("status", status.as_str().to_owned()),
    ];
    counter!(HTTP_REQUESTS, labels.clone()).increment(1);
    histogram!(HTTP_DURATION, labels).record(took.as_secs_f64());
}

/// A booking created, changed or cancelled: counted once the write is
/// durable.
pub fn booking_created() {
    counter!(BOOKINGS_CREATED).increment(1);
}

pub fn booking_changed() {
    counter!(BOOKINGS_CHANGED).increment(1);
}

pub fn booking_cancelled() {
    counter!(BOOKINGS_CANCELLED).increment(1);
}

/// An error answered with `reason` (a name from [`crate::reasons`]).
pub fn refusal(reason: &'static str) {
    counter!(REFUSALS, "reason" => reason).increment(1);
}

/// The health a service reports.
pub fn health(service: &'static str, serving: bool) {
    let service = if service.is_empty() {
        "server"
    } else {
        service
    };
    gauge!(HEALTH, "service" => service).set(if serving { 1.0 } else { 0.0 });
}

/// One store operation: how long it took, and whether it failed for a
/// storage reason.
pub fn store_operation(
    backend: &'static str,
    operation: &'static str,
    took: Duration,
    failed: bool,
) {
    histogram!(STORE_DURATION, "backend" => backend, "operation" => operation)
        .record(took.as_secs_f64());
    if failed {
        counter!(STORE_ERRORS, "backend" => backend, "operation" => operation).increment(1);
    }
}

/// One group commit of the embedded writer, and what still waits.
pub fn writer_batch(requests: usize, waiting: usize) {
    histogram!(WRITER_BATCH).record(requests as f64);
    gauge!(WRITER_QUEUE).set(waiting as f64);
}

/// What a cached read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// The cache failed; the store answered.
    Error,
    /// The cache was not asked: invalidations are waiting to be delivered.
    Bypass,
}

impl CacheResult {
    /// Every result, in the order `as usize` gives.
    const EVERY: [Self; 4] = [Self::Hit, Self::Miss, Self::Error, Self::Bypass];

    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Error => "error",
            Self::Bypass => "bypass",
        }
    }
}

/// What a cached read was for: the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    Allocation,
    History,
    Employee,
    Driver,
    Vehicle,
    AvailableVehicles,
}

impl CacheKind {
    /// Every kind, in the order `as usize` gives.
    const EVERY: [Self; 6] = [
        Self::Allocation,
        Self::History,
        Self::Employee,
        Self::Driver,
        Self::Vehicle,
        Self::AvailableVehicles,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::History => "history",
            Self::Employee => "employee",
            Self::Driver => "driver",
            Self::Vehicle => "vehicle",
            Self::AvailableVehicles => "available_vehicles",
        }
    }
}

/// A cache's request counters, one per kind and result.
pub struct CacheCounters {
    counters: [[LocalCounter; CacheResult::EVERY.len()]; CacheKind::EVERY.len()],
}

impl CacheCounters {
    pub fn new(backend: &'static str) -> Self {
        Self {
            counters: CacheKind::EVERY.map(|kind| {
                CacheResult::EVERY.map(|result| {
                    LocalCounter::on_first_use(
                        CACHE_REQUESTS,
                        vec![
                            metrics::Label::new("backend", backend),
                            metrics::Label::new("kind", kind.as_str()),
                            metrics::Label::new("result", result.as_str()),
                        ],
                    )
                })
            }),
        }
    }

    pub fn record(&self, kind: CacheKind, result: CacheResult) {
        self.counters[kind as usize][result as usize].increment(1);
    }
}

pub fn cache_degraded(backend: &'static str, degraded: bool) {
    gauge!(CACHE_DEGRADED, "backend" => backend).set(if degraded { 1.0 } else { 0.0 });
}

pub fn redis_call(operation: &'static str, took: Duration) {
    histogram!(REDIS_DURATION, "operation" => operation).record(took.as_secs_f64());
}

pub fn mongo_checkout() {
    counter!(MONGO_CHECKOUTS).increment(1);
}

pub fn mongo_checkout_failed(reason: &'static str) {
    counter!(MONGO_CHECKOUT_FAILURES, "reason" => reason).increment(1);
}

/// How many tries a committed transaction of `operation` ("booking",
/// "fleet") took, the first included.
pub fn mongo_transaction_attempts(operation: &'static str, attempts: u32) {
    histogram!(MONGO_TRANSACTION_ATTEMPTS, "operation" => operation).record(f64::from(attempts));
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::*;

    /// A scrape hands on every thread's buffered updates: unit tests that
    /// scrape take turns, so that one's scrape does not hand on what
    /// another counts as still buffered.
    pub(crate) fn scrape_turn() -> MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of the sample line `series` (name and labels as
    /// rendered) in a scrape's `text`, if shown.
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[test]
    fn transaction_attempts_fall_in_their_buckets() {
        let _turn = scrape_turn();
        let handle = install();
        let series = |le: &str| {
            format!("{MONGO_TRANSACTION_ATTEMPTS}_bucket{{operation=\"fleet\",le=\"{le}\"}}")
        };
        let before = render(&handle);
        let count = |text: &str, le: &str| sample(text, &series(le)).unwrap_or(0.0);
        mongo_transaction_attempts("fleet", 1);
        mongo_transaction_attempts("fleet", 4);
        let after = render(&handle);
        assert_eq!(count(&after, "1") - count(&before, "1"), 1.0, "{after}");
        assert_eq!(count(&after, "3") - count(&before, "3"), 1.0, "{after}");
        assert_eq!(count(&after, "5") - count(&before, "5"), 2.0, "{after}");
        assert!(
            after.contains(&format!("# HELP {MONGO_TRANSACTION_ATTEMPTS} ")),
            "{after}"
        );
    }

    #[test]
    fn cache_counters_are_indexed_as_the_lists_are_ordered() {
        for (i, kind) in CacheKind::EVERY.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "{kind:?}");
        }
        for (i, result) in CacheResult::EVERY.into_iter().enumerate() {
            assert_eq!(result as usize, i, "{result:?}");
        }
    }
}
