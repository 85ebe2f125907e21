//! What is asked of the service: the calls, their inputs, and the clients
//! that send them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Days, NaiveDate, Utc};
use tonic::transport::Channel;
use vehicle_allocation::proto::v1::allocation_service_client::AllocationServiceClient;
use vehicle_allocation::proto::v1::event_service_client::EventServiceClient;
use vehicle_allocation::proto::v1::fleet_service_client::FleetServiceClient;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, GetAllocationRequest, ListAllocationHistoryRequest,
    ListAvailableVehiclesRequest,
};
use vehicle_allocation::seed::fleet::{employee_id, vehicle_id};

use crate::dataset::Size;
use crate::driver::{self, Load, Outcome};
use crate::echo::proto::EchoMessage;
use crate::echo::proto::echo_client::EchoClient;
use crate::server::ServerProcess;

/// About the size of an allocation on the wire, so the echo moves as many
/// bytes as the calls it is compared with.
const ECHO_PAYLOAD: usize = 200;

/// How many pages deep the deep-page runs start.
const DEEP_PAGE: usize = 10;

/// Which history filter a run uses.
#[derive(Debug, Clone, Copy)]
pub enum Filter {
    Employee,
    Vehicle,
    /// Thirty days in the past year.
    Dates,
}

/// A call to measure.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    Get,
    History { filter: Filter, deep: bool },
    Create,
    Available,
}

/// A named call over one transport.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub transport: &'static str,
    pub call: Call,
}

const fn grpc(name: &'static str, call: Call) -> Scenario {
    Scenario {
        name,
        transport: "grpc",
        call,
    }
}

const fn rest(name: &'static str, call: Call) -> Scenario {
    Scenario {
        name,
        transport: "rest",
        call,
    }
}

const fn history(filter: Filter, deep: bool) -> Call {
    Call::History { filter, deep }
}

/// The runs for a server with the given cache.
pub fn scenarios(cache: &str) -> Vec<Scenario> {
    use Filter::{Dates, Employee, Vehicle};
    match cache {
        "in-process cache" => vec![
            grpc("GetAllocation", Call::Get),
            grpc("history by employee, first page", history(Employee, false)),
            grpc("history by employee, deep page", history(Employee, true)),
            grpc("history by vehicle, first page", history(Vehicle, false)),
            grpc("history by vehicle, deep page", history(Vehicle, true)),
            grpc("history by dates, first page", history(Dates, false)),
            grpc("history by dates, deep page", history(Dates, true)),
            grpc("ListAvailableVehicles", Call::Available),
            grpc("CreateAllocation", Call::Create),
            // The same creates, with one WatchEvents subscriber following
            // them (its lag is reported beside the table).
            grpc("CreateAllocation, watched", Call::Create),
            rest("GetAllocation", Call::Get),
            rest("history by employee, first page", history(Employee, false)),
            rest("ListAvailableVehicles", Call::Available),
            rest("CreateAllocation", Call::Create),
        ],
        // Availability read from the store, with vehicles out of service
        // (compare with "ListAvailableVehicles [no cache]").
        c if c.contains("blocked") => vec![grpc("ListAvailableVehicles", Call::Available)],
        // The same cached read as "in-process cache", with a bearer token
        // verified on every call.
        c if c.contains("token") => vec![
            grpc("GetAllocation", Call::Get),
            rest("GetAllocation", Call::Get),
        ],
        "redis cache" => vec![
            grpc("GetAllocation", Call::Get),
            grpc("history by employee, first page", history(Employee, false)),
            grpc("ListAvailableVehicles", Call::Available),
        ],
        _ => vec![
            grpc("GetAllocation", Call::Get),
            grpc("history by employee, first page", history(Employee, false)),
            grpc("history by employee, deep page", history(Employee, true)),
            grpc("history by vehicle, first page", history(Vehicle, false)),
            grpc("history by vehicle, deep page", history(Vehicle, true)),
            grpc("history by dates, first page", history(Dates, false)),
            grpc("history by dates, deep page", history(Dates, true)),
            grpc("ListAvailableVehicles", Call::Available),
        ],
    }
}

/// How far behind the writes one `WatchEvents` subscriber was.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WatchLag {
    /// Events it received (the warmup's writes included).
    pub events: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl From<Vec<i64>> for WatchLag {
    fn from(mut lags_us: Vec<i64>) -> Self {
        lags_us.sort_unstable();
        let at = |q: f64| {
            if lags_us.is_empty() {
                return 0.0;
            }
            let i = ((lags_us.len() - 1) as f64 * q).round() as usize;
            lags_us[i] as f64 / 1000.0
        };
        Self {
            events: lags_us.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Takes one vehicle in `every` out of service over the days availability
/// is asked for (today and the 59 after it), cancelling their bookings then.
pub async fn block_vehicles(server: &ServerProcess, size: Size, every: usize) -> usize {
    let channel = connect(server.grpc, 1).await.remove(0);
    let mut fleet = FleetServiceClient::new(channel);
    let today = Utc::now().date_naive();
    let mut blocked = 0;
    for n in (1..=size.vehicles).step_by(every) {
        fleet
            .create_vehicle_block(v1::CreateVehicleBlockRequest {
                vehicle_id: vehicle_id(n),
                block: Some(v1::VehicleBlock {
                    start_date: today.to_string(),
                    end_date: (today + Days::new(59)).to_string(),
                    reason: "Benchmark servicing".into(),
                    ..Default::default()
                }),
                cancel_conflicting_bookings: true,
            })
            .await
            .expect("block a vehicle");
        blocked += 1;
    }
    blocked
}

/// Measures the echo server.
pub async fn echo(addr: SocketAddr, connections: usize, load: Load) -> Outcome {
    let channels = connect(addr, connections).await;
    driver::drive(load, move |worker, _| {
        let mut client = EchoClient::new(channels[worker % channels.len()].clone());
        async move {
            client
                .echo(EchoMessage {
                    payload: vec![7; ECHO_PAYLOAD],
                })
                .await
                .is_ok()
        }
    })
    .await
}

async fn connect(addr: SocketAddr, connections: usize) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .expect("address")
                .connect()
                .await
                .expect("connect"),
        );
    }
    channels
}

/// A cheap, deterministic pseudo-random pick per worker and request.
fn pick(worker: usize, sequence: u64, len: usize) -> usize {
    let mut x = (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sequence;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % len as u64) as usize
}

/// The inputs of the calls, gathered from the service before measuring.
struct Inputs {
    today: NaiveDate,
    ids: Vec<String>,
    employees: Vec<String>,
    vehicles: Vec<String>,
    /// (employee, token of the deep page)
    deep_employee: Vec<(String, String)>,
    deep_vehicle: Vec<(String, String)>,
    /// (start, end) of thirty-day ranges, and their deep-page tokens.
    ranges: Vec<(String, String)>,
    deep_ranges: Vec<(String, String, String)>,
    /// Creates take free slots from this counter.
    next_slot: AtomicU64,
    fleet: usize,
}

/// Clients of one running service, and the inputs for its calls.
pub struct Setup {
    /// The `authorization` header every call sends, if the server wants one.
    authorization: Option<String>,
    channels: Vec<Channel>,
    http: reqwest::Client,
    base: String,
    inputs: Arc<Inputs>,
}

/// `message` with the `authorization` header, if any.
fn authorized<T>(authorization: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ASCII"));
    }
    request
}

async fn page(
    client: &mut AllocationServiceClient<Channel>,
    authorization: Option<&str>,
    request: ListAllocationHistoryRequest,
) -> v1::ListAllocationHistoryResponse {
    client
        .list_allocation_history(authorized(authorization, request))
        .await
        .expect("list history")
        .into_inner()
}

/// The token of page `DEEP_PAGE` for `filter`.
async fn deep_token(
    client: &mut AllocationServiceClient<Channel>,
    authorization: Option<&str>,
    filter: ListAllocationHistoryRequest,
) -> String {
    let mut token = String::new();
    for _ in 0..DEEP_PAGE {
        let request = ListAllocationHistoryRequest {
            page_token: token.clone(),
            page_size: 50,
            ..filter.clone()
        };
        token = page(client, authorization, request).await.next_page_token;
        assert!(
            !token.is_empty(),
            "the data set is too small for deep pages"
        );
    }
    token
}

impl Setup {
    /// `token`: a bearer token (with a role that reads everything) for a
    /// server that authenticates.
    pub async fn new(
        server: &ServerProcess,
        connections: usize,
        size: Size,
        token: Option<String>,
    ) -> Self {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let auth = authorization.as_deref();
        let channels = connect(server.grpc, connections).await;
        let mut client = AllocationServiceClient::new(channels[0].clone());
        let today = Utc::now().date_naive();
        let mut ids = Vec::new();
        let mut token = String::new();
        while ids.len() < 2000 {
            let response = page(
                &mut client,
                auth,
                ListAllocationHistoryRequest {
                    page_size: 500,
                    page_token: token,
                    ..Default::default()
                },
            )
            .await;
            ids.extend(response.allocations.into_iter().map(|a| a.id));
            token = response.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let employees: Vec<String> = (1..=size.employees).map(employee_id).collect();
        let vehicles: Vec<String> = (1..=size.vehicles).map(vehicle_id).collect();
        let mut deep_employee = Vec::new();
        let mut deep_vehicle = Vec::new();
        for i in 0..20 {
            let employee = employees[i * employees.len() / 20].clone();
            let filter = ListAllocationHistoryRequest {
                employee_id: employee.clone(),
                ..Default::default()
            };
            deep_employee.push((employee, deep_token(&mut client, auth, filter).await));
            let vehicle = vehicles[i * vehicles.len() / 20].clone();
            let filter = ListAllocationHistoryRequest {
                vehicle_id: vehicle.clone(),
                ..Default::default()
            };
            deep_vehicle.push((vehicle, deep_token(&mut client, auth, filter).await));
        }
        let day = |back: u64| (today - Days::new(back)).to_string();
        let ranges: Vec<(String, String)> = (0..10)
            .map(|i| (day(330 - i * 30), day(301 - i * 30)))
            .collect();
        let mut deep_ranges = Vec::new();
        for (start, end) in ranges.iter().take(3) {
            let filter = ListAllocationHistoryRequest {
                start_date: start.clone(),
                end_date: end.clone(),
                ..Default::default()
            };
            let token = deep_token(&mut client, auth, filter).await;
            deep_ranges.push((start.clone(), end.clone(), token));
        }
        Self {
            authorization,
            channels,
            http: reqwest::Client::new(),
            base: format!("http://{}", server.http),
            inputs: Arc::new(Inputs {
                today,
                ids,
                employees,
                vehicles,
                deep_employee,
                deep_vehicle,
                ranges,
                deep_ranges,
                next_slot: AtomicU64::new(0),
                fleet: size.employees.min(size.vehicles),
            }),
        }
    }

    /// Measures `scenario` under `load`.
    /// Runs `scenario` with one `WatchEvents` subscriber following the
    /// events written meanwhile; returns the run's outcome and the
    /// subscriber's lag.
    pub async fn run_watched(&self, scenario: &Scenario, load: Load) -> (Outcome, WatchLag) {
        let since = Utc::now();
        let mut events = EventServiceClient::new(self.channels[0].clone());
        let request = v1::WatchEventsRequest {
            // Only what this run writes: no replay of the seeded history.
            start_time: Some(prost_types::Timestamp {
                seconds: since.timestamp(),
                nanos: since.timestamp_subsec_nanos() as i32,
            }),
            ..Default::default()
        };
        let mut stream = events
            .watch_events(authorized(self.authorization.as_deref(), request))
            .await
            .expect("watch events")
            .into_inner();
        let lags_us = Arc::new(std::sync::Mutex::new(Vec::new()));
        let watcher = {
            let lags_us = Arc::clone(&lags_us);
            tokio::spawn(async move {
                while let Ok(Some(message)) = stream.message().await {
                    if let Some(v1::watch_events_response::Message::Event(event)) = message.message
                    {
                        let at = event.event_time.expect("an event time");
                        let made = chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32)
                            .expect("a valid time");
                        // The server's clock is this machine's: the lag runs
                        // from the write's time to the event's arrival here.
                        let lag = (Utc::now() - made).num_microseconds().unwrap_or(0);
                        lags_us.lock().unwrap().push(lag.max(0));
                    }
                }
            })
        };
        let outcome = self.run(scenario, load).await;
        // The subscriber catches up: until nothing arrives for 200 ms.
        let mut seen = usize::MAX;
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let now = lags_us.lock().unwrap().len();
            if now == seen {
                break;
            }
            seen = now;
        }
        watcher.abort();
        drop(events);
        let lags_us = std::mem::take(&mut *lags_us.lock().unwrap());
        (outcome, WatchLag::from(lags_us))
    }

    pub async fn run(&self, scenario: &Scenario, load: Load) -> Outcome {
        let inputs = Arc::clone(&self.inputs);
        let call = scenario.call;
        let authorization = self.authorization.clone();
        if scenario.transport == "rest" {
            let (http, base) = (self.http.clone(), self.base.clone());
            return driver::drive(load, move |worker, sequence| {
                let mut request = rest_request(&http, &base, &inputs, call, worker, sequence);
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                async move {
                    match request.send().await {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            let _ = response.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    }
                }
            })
            .await;
        }
        let channels = self.channels.clone();
        driver::drive(load, move |worker, sequence| {
            let channel = channels[worker % channels.len()].clone();
            let inputs = Arc::clone(&inputs);
            let authorization = authorization.clone();
            async move {
                let auth = authorization.as_deref();
                grpc_call(channel, auth, &inputs, call, worker, sequence).await
            }
        })
        .await
    }
}

/// The free slot for the `n`th create of the run: a day beyond the seeded
/// ones, and an employee and vehicle not yet booked that day.
fn slot(inputs: &Inputs) -> (String, String, String) {
    let n = inputs.next_slot.fetch_add(1, Ordering::Relaxed) as usize;
    let day = inputs.today + Days::new(61 + (n / inputs.fleet) as u64);
    let i = n % inputs.fleet;
    (
        inputs.employees[i].clone(),
        inputs.vehicles[i].clone(),
        day.to_string(),
    )
}

fn history_request(
    inputs: &Inputs,
    filter: Filter,
    deep: bool,
    worker: usize,
    sequence: u64,
) -> ListAllocationHistoryRequest {
    let mut request = ListAllocationHistoryRequest {
        page_size: 50,
        ..Default::default()
    };
    match (filter, deep) {
        (Filter::Employee, false) => {
            request.employee_id =
                inputs.employees[pick(worker, sequence, inputs.employees.len())].clone();
        }
        (Filter::Employee, true) => {
            let (employee, token) =
                &inputs.deep_employee[pick(worker, sequence, inputs.deep_employee.len())];
            request.employee_id = employee.clone();
            request.page_token = token.clone();
        }
        (Filter::Vehicle, false) => {
            request.vehicle_id =
                inputs.vehicles[pick(worker, sequence, inputs.vehicles.len())].clone();
        }
        (Filter::Vehicle, true) => {
            let (vehicle, token) =
                &inputs.deep_vehicle[pick(worker, sequence, inputs.deep_vehicle.len())];
            request.vehicle_id = vehicle.clone();
            request.page_token = token.clone();
        }
        (Filter::Dates, false) => {
            let (start, end) = &inputs.ranges[pick(worker, sequence, inputs.ranges.len())];
            request.start_date = start.clone();
            request.end_date = end.clone();
        }
        (Filter::Dates, true) => {
            let (start, end, token) =
                &inputs.deep_ranges[pick(worker, sequence, inputs.deep_ranges.len())];
            request.start_date = start.clone();
            request.end_date = end.clone();
            request.page_token = token.clone();
        }
    }
    request
}

fn available_date(inputs: &Inputs, worker: usize, sequence: u64) -> String {
    (inputs.today + Days::new(pick(worker, sequence, 60) as u64)).to_string()
}

async fn grpc_call(
    channel: Channel,
    auth: Option<&str>,
    inputs: &Inputs,
    call: Call,
    worker: usize,
    sequence: u64,
) -> bool {
    match call {
        Call::Get => {
            let id = inputs.ids[pick(worker, sequence, inputs.ids.len())].clone();
            AllocationServiceClient::new(channel)
                .get_allocation(authorized(auth, GetAllocationRequest { id }))
                .await
                .is_ok()
        }
        Call::History { filter, deep } => {
            let request = history_request(inputs, filter, deep, worker, sequence);
            AllocationServiceClient::new(channel)
                .list_allocation_history(authorized(auth, request))
                .await
                .is_ok()
        }
        Call::Create => {
            let (employee_id, vehicle_id, allocation_date) = slot(inputs);
            AllocationServiceClient::new(channel)
                .create_allocation(authorized(
                    auth,
                    CreateAllocationRequest {
                        allocation: Some(v1::Allocation {
                            employee_id,
                            vehicle_id,
                            allocation_date,
                            purpose: "Benchmark".into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                ))
                .await
                .is_ok()
        }
        Call::Available => FleetServiceClient::new(channel)
            .list_available_vehicles(authorized(
                auth,
                ListAvailableVehiclesRequest {
                    date: available_date(inputs, worker, sequence),
                    page_size: 50,
                    page_token: String::new(),
                },
            ))
            .await
            .is_ok(),
    }
}

fn rest_request(
    http: &reqwest::Client,
    base: &str,
    inputs: &Inputs,
    call: Call,
    worker: usize,
    sequence: u64,
) -> reqwest::RequestBuilder {
    match call {
        Call::Get => {
            let id = &inputs.ids[pick(worker, sequence, inputs.ids.len())];
            http.get(format!("{base}/api/allocations/{id}"))
        }
        Call::History { filter, deep } => {
            let r = history_request(inputs, filter, deep, worker, sequence);
            let query = [
                ("employee_id", r.employee_id),
                ("vehicle_id", r.vehicle_id),
                ("start_date", r.start_date),
                ("end_date", r.end_date),
                ("page_token", r.page_token),
                ("page_size", r.page_size.to_string()),
            ];
            let query: Vec<_> = query.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            http.get(format!("{base}/api/allocations/history"))
                .query(&query)
        }
        Call::Create => {
            let (employee_id, vehicle_id, allocation_date) = slot(inputs);
            http.post(format!("{base}/api/allocations"))
                .json(&serde_json::json!({
                    "employee_id": employee_id,
                    "vehicle_id": vehicle_id,
                    "allocation_date": allocation_date,
                    "purpose": "Benchmark",
                }))
        }
        Call::Available => http.get(format!("{base}/api/vehicles/available")).query(&[
            ("date", available_date(inputs, worker, sequence)),
            ("page_size", "50".into()),
        ]),
    }
}
