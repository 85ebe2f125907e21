//! `spawn_app()`: the service on port 0 with a manual clock, a fixed fleet
//! and a store whose failures the test controls.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use vehicle_allocation::app::{AppError, Application};
use vehicle_allocation::auth::AuthSettings;
use vehicle_allocation::cache::CacheConfig;
use vehicle_allocation::clock::ManualClock;
use vehicle_allocation::config::{MetricsSettings, Settings};
use vehicle_allocation::domain::access::Role;
use vehicle_allocation::domain::{Allocation, BookingPolicy, Employee, Vehicle};
use vehicle_allocation::gateway::{CorsOrigins, GatewayConfig};
use vehicle_allocation::grpc::events::EventSettings;
use vehicle_allocation::proto::v1::allocation_service_client::AllocationServiceClient;
use vehicle_allocation::proto::v1::event_service_client::EventServiceClient;
use vehicle_allocation::proto::v1::fleet_service_client::FleetServiceClient;
use vehicle_allocation::proto::v1::{self, CreateAllocationRequest};
use vehicle_allocation::seed::{self, SeedPlan};
use vehicle_allocation::server::ServerLimits;
use vehicle_allocation::storage::cached::CachedStore;
use vehicle_allocation::storage::sqlite::SqliteStore;
use vehicle_allocation::storage::{self, Store, StoreConfig};
use vehicle_allocation::tls::TlsSettings;

pub use crate::instrumented_store::{InstrumentedStore, Instruments};

/// The fleet every test app starts with.
pub const FLEET: SeedPlan = SeedPlan {
    employees: 60,
    vehicles: 45,
    allocations: 0,
    seed: 5,
};

/// The instant test apps start at.
pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// How a test app differs from the default.
#[derive(Clone)]
pub struct AppOptions {
    pub policy: BookingPolicy,
    /// Reuse a data directory (to restart on the same data).
    pub data_dir: Option<Arc<tempfile::TempDir>>,
    /// Load the fixed fleet into an empty store.
    pub fleet: bool,
    /// Start with `--demo`.
    pub demo: bool,
    pub shutdown_timeout: Duration,
    pub now: DateTime<Utc>,
    pub gateway: GatewayConfig,
    /// In-process by default, so every test also exercises the cache.
    pub cache: CacheConfig,
    /// No authentication by default: every caller is the anonymous admin.
    pub auth: AuthSettings,
    pub tls: Option<TlsSettings>,
    /// With `tls`: the CA the test clients trust, and the client
    /// certificate (PEM cert, PEM key) they present, if any.
    pub client_tls: Option<(String, Option<(String, String)>)>,
    pub reflection: bool,
    pub limits: ServerLimits,
    /// Another app's embedded store, for a second replica: a data
    /// directory is opened by one store at a time.
    pub shared_store: Option<Arc<dyn Store>>,
    /// `PAGE_TOKEN_KEY`.
    pub page_token_key: Option<String>,
    /// Event retention and stream heartbeats.
    pub events: EventSettings,
    /// Metrics on, and `METRICS_ADDR`.
    pub metrics: MetricsSettings,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            policy: BookingPolicy::default(),
            data_dir: None,
            fleet: true,
            demo: false,
            shutdown_timeout: Duration::from_secs(10),
            now: start_time(),
            gateway: GatewayConfig {
                request_timeout: Duration::from_secs(10),
                cors: CorsOrigins::None,
            },
            cache: CacheConfig::default(),
            auth: AuthSettings::default(),
            tls: None,
            client_tls: None,
            reflection: true,
            limits: ServerLimits::default(),
            shared_store: None,
            page_token_key: None,
            events: EventSettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

/// How a test call authenticates.
#[derive(Debug, Clone)]
pub enum Cred {
    None,
    Bearer(String),
    ApiKey(String),
}

impl Cred {
    /// `message` as a gRPC request carrying this credential.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        match self {
            Cred::None => {}
            Cred::Bearer(token) => {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
            }
            Cred::ApiKey(key) => {
                request
                    .metadata_mut()
                    .insert("x-api-key", key.parse().unwrap());
            }
        }
        request
    }

    /// A REST request carrying this credential.
    pub fn rest(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Cred::None => request,
            Cred::Bearer(token) => request.bearer_auth(token),
            Cred::ApiKey(key) => request.header("x-api-key", key),
        }
    }
}

/// A running service and clients for it.
pub struct TestApp {
    grpc_addr: std::net::SocketAddr,
    /// A plain HTTP client, and the gateway's base URL.
    pub http: reqwest::Client,
    pub http_base: String,
    /// Where `/metrics` alone is served, with `METRICS_ADDR` (read by the
    /// telemetry tests).
    #[allow(dead_code)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub channel: Channel,
    pub allocations: AllocationServiceClient<Channel>,
    pub fleet: FleetServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
    pub clock: Arc<ManualClock>,
    pub faults: Arc<Instruments>,
    /// The cache in front of the store, when there is one.
    pub cache: Option<Arc<CachedStore>>,
    /// The store behind the app, for arranging data directly.
    pub store: Arc<dyn Store>,
    /// The same, as the embedded store it is (absent for a second replica
    /// on another app's store), for its fault injection.
    pub embedded: Option<Arc<SqliteStore>>,
    pub data_dir: Arc<tempfile::TempDir>,
    pub employees: Vec<Employee>,
    pub vehicles: Vec<Vehicle>,
    pub policy: BookingPolicy,
    /// What the helpers (`create`, `book`) send: a fleet_admin token when
    /// the app verifies HS256 tokens, else nothing.
    pub admin: Cred,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), AppError>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    init_test_logging();
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("temporary directory")));
    let (sqlite, embedded): (Arc<dyn Store>, _) = match &options.shared_store {
        Some(store) => (Arc::clone(store), None),
        None => {
            let store = Arc::new(SqliteStore::open(data_dir.path()).expect("open store"));
            (Arc::clone(&store) as Arc<dyn Store>, Some(store))
        }
    };
    let (employees, vehicles) = seed::generate_fleet(&FLEET, options.now);
    if options.fleet && sqlite.is_empty().await.unwrap() {
        sqlite
            .insert_fleet(employees.clone(), vehicles.clone())
            .await
            .unwrap();
    }
    let instrumented = InstrumentedStore::new(Arc::clone(&sqlite));
    let faults = Arc::clone(&instrumented.instruments);
    // Timed like a store opened by the service.
    let metered = storage::metered(Arc::new(instrumented), storage::SQLITE);
    let setup = storage::with_cache(metered, &options.cache).expect("cache");
    let store = setup.store;
    let clock = Arc::new(ManualClock::new(options.now));
    let settings = Settings {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_upstream: None,
        gateway: options.gateway.clone(),
        store: StoreConfig::Embedded {
            data_dir: data_dir.path().to_owned(),
        },
        cache: options.cache.clone(),
        policy: options.policy,
        demo: options.demo,
        shutdown_timeout: options.shutdown_timeout,
        health_check_interval: Duration::from_millis(20),
        auth: options.auth.clone(),
        tls: options.tls.clone(),
        upstream_tls: Default::default(),
        reflection: options.reflection,
        limits: options.limits,
        integrity_check: true,
        page_token_key: options.page_token_key.clone(),
        events: options.events,
        metrics: options.metrics,
    };
    let app = Application::build_with(settings, store, clock.clone())
        .await
        .expect("build the app");
    let addr = app.grpc_addr().expect("gRPC is served");
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let http_base = format!("{scheme}://{}", app.http_addr());
    let metrics_addr = app.metrics_addr();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop.await;
    }));
    let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}")).unwrap();
    let mut http = reqwest::Client::builder();
    if let Some((ca, identity)) = &options.client_tls {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        http = http.tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()]);
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
            http = http
                .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
        }
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint.connect().await.expect("connect to the app");
    let admin = if matches!(
        options.auth.jwt.as_ref().map(|jwt| &jwt.keys),
        Some(vehicle_allocation::auth::jwt::KeySource::Hs256(_))
    ) {
        Cred::Bearer(crate::identity::token(
            "admin",
            &[Role::FleetAdmin],
            options.now,
        ))
    } else {
        Cred::None
    };
    TestApp {
        grpc_addr: addr,
        http: http.build().unwrap(),
        http_base,
        metrics_addr,
        allocations: AllocationServiceClient::new(channel.clone()),
        fleet: FleetServiceClient::new(channel.clone()),
        events: EventServiceClient::new(channel.clone()),
        channel,
        clock,
        faults,
        cache: setup.cache,
        store: sqlite,
        embedded,
        data_dir,
        employees,
        vehicles,
        policy: options.policy,
        admin,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    /// The address of the gRPC server.
    pub fn channel_addr(&self) -> std::net::SocketAddr {
        self.grpc_addr
    }

    /// A gRPC connection from another loopback address (say 127.0.0.2):
    /// another peer, for what is counted per peer.
    pub async fn channel_from(&self, local: std::net::IpAddr) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .local_address(Some(local))
            .connect()
            .await
            .unwrap()
    }

    /// The address of the REST gateway.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        let host = self
            .http_base
            .split("://")
            .nth(1)
            .unwrap_or(&self.http_base);
        host.parse().expect("the gateway's address")
    }

    /// The gateway URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_base)
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Shuts down and waits until the server has stopped.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.begin_shutdown();
        if let Some(server) = self.server.take() {
            server.await.unwrap().expect("server stopped cleanly");
        }
        Arc::clone(&self.data_dir)
    }

    /// The server task, to await its end.
    pub fn server(&mut self) -> JoinHandle<Result<(), AppError>> {
        self.server.take().expect("server still running")
    }

    pub fn employee(&self, i: usize) -> String {
        self.employees[i].id.clone()
    }

    pub fn vehicle(&self, i: usize) -> String {
        self.vehicles[i].id.clone()
    }

    pub fn driver_of(&self, i: usize) -> String {
        self.vehicles[i]
            .driver
            .as_ref()
            .expect("a seeded driver")
            .id
            .clone()
    }

    /// Today (by the app's clock) plus `days`, as "YYYY-MM-DD".
    pub fn day(&self, days: i64) -> String {
        let today = self.today();
        let date = if days >= 0 {
            today + Days::new(days as u64)
        } else {
            today - Days::new(days.unsigned_abs())
        };
        date.to_string()
    }

    /// The app's clock.
    pub fn clock_now(&self) -> DateTime<Utc> {
        use vehicle_allocation::clock::Clock;
        self.clock.now()
    }

    pub fn today(&self) -> NaiveDate {
        use vehicle_allocation::clock::Clock;
        self.policy.today(self.clock.now())
    }

    /// Books vehicle `v` for employee `e`, `days` from today.
    pub async fn book(&self, e: usize, v: usize, days: i64) -> Result<v1::Allocation, Status> {
        self.create(v1::Allocation {
            employee_id: self.employee(e),
            vehicle_id: self.vehicle(v),
            allocation_date: self.day(days),
            purpose: format!("trip {e}-{v}"),
            ..Default::default()
        })
        .await
    }

    pub async fn create(&self, allocation: v1::Allocation) -> Result<v1::Allocation, Status> {
        self.allocations
            .clone()
            .create_allocation(self.admin.grpc(CreateAllocationRequest {
                allocation: Some(allocation),
                request_id: String::new(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `ListVehicles` as `cred`: the simplest call that needs a caller.
    pub async fn list_vehicles_as(&self, cred: &Cred) -> Result<v1::ListVehiclesResponse, Status> {
        self.fleet
            .clone()
            .list_vehicles(cred.grpc(v1::ListVehiclesRequest::default()))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every event after `after` that `cred` may see, through `ListEvents`
    /// a page of 100 at a time.
    pub async fn events_after(&self, cred: &Cred, after: i64) -> Result<Vec<v1::Event>, Status> {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .events
                .clone()
                .list_events(cred.grpc(v1::ListEventsRequest {
                    page_size: 100,
                    page_token,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            events.extend(page.events.into_iter().filter(|e| e.sequence > after));
            if page.next_page_token.is_empty() {
                return Ok(events);
            }
            page_token = page.next_page_token;
        }
    }

    /// The newest event's sequence ever (0 before the first), as the store
    /// signals it: events may have been pruned since.
    pub async fn newest_event(&self) -> i64 {
        *self.store.event_signal().borrow() as i64
    }

    /// `WatchEvents` as `cred`.
    pub async fn watch(
        &self,
        cred: &Cred,
        request: v1::WatchEventsRequest,
    ) -> Result<tonic::Streaming<v1::WatchEventsResponse>, Status> {
        self.events
            .clone()
            .watch_events(cred.grpc(request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `GET path` on the gateway, without credentials.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// The OpenAPI document as the gateway serves it.
    pub async fn openapi(&self) -> serde_json::Value {
        let response = self.get("/openapi.json").await;
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Sends `request`; its status, headers and JSON body (`null` when none).
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (
        reqwest::StatusCode,
        reqwest::header::HeaderMap,
        serde_json::Value,
    ) {
        json_of(request.send().await.unwrap()).await
    }

    /// Writes bookings directly to the store (history included).
    pub async fn insert(&self, bookings: Vec<Allocation>) {
        self.store.insert_allocations(bookings).await.unwrap();
    }
}

/// Settings of a plain service on loopback port 0 over the embedded store
/// in `data_dir`, for tests that build an `Application` themselves.
/// A response's status, headers and JSON body (`null` when none).
pub async fn json_of(
    response: reqwest::Response,
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .json::<serde_json::Value>()
        .await
        .unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

pub fn plain_settings(data_dir: &std::path::Path) -> Settings {
    Settings {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_upstream: None,
        gateway: GatewayConfig {
            request_timeout: Duration::from_secs(5),
            cors: CorsOrigins::None,
        },
        store: StoreConfig::Embedded {
            data_dir: data_dir.to_owned(),
        },
        cache: CacheConfig::default(),
        policy: BookingPolicy::default(),
        demo: false,
        shutdown_timeout: Duration::from_secs(5),
        health_check_interval: Duration::from_secs(1),
        auth: AuthSettings::default(),
        tls: None,
        upstream_tls: Default::default(),
        reflection: true,
        limits: ServerLimits::default(),
        integrity_check: true,
        page_token_key: None,
        events: Default::default(),
        metrics: Default::default(),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Checks a status's code and `ErrorInfo.reason`, and returns its details.
#[track_caller]
pub fn assert_status(status: &Status, code: Code, reason: &str) -> ErrorDetails {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("every error carries ErrorInfo");
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "vehicle-allocation");
    details
}

/// The fields named by a status's `BadRequest`.
pub fn violated_fields(details: &ErrorDetails) -> Vec<String> {
    details
        .bad_request()
        .expect("bad input carries BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect()
}

/// Everything the services log during the test run, so tests can check
/// log lines; also printed when `TEST_LOG` is set.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log lines written so far by every app in this test binary.
pub fn logged_lines() -> Vec<String> {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .map(str::to_owned)
        .collect()
}

/// [`logged_lines`] that contain `needle`, e.g. a request id.
pub fn logged_lines_with(needle: &str) -> Vec<String> {
    logged_lines()
        .into_iter()
        .filter(|line| line.contains(needle))
        .collect()
}

/// One global subscriber for the whole binary: a per-test one would miss
/// events that tracing's per-callsite cache decided about in another test.
fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // reqwest's TLS uses the process's rustls provider.
        vehicle_allocation::tls::install_default_provider();
        let filter = if std::env::var_os("TEST_LOG").is_some() {
            "debug"
        } else {
            "info"
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(|| LogWriter)
            // The telemetry tests install the service's own subscriber.
            .try_init();
    });
}
