//! The binary as a newcomer runs it: `seed`, `serve --demo`, bad settings.

use std::path::Path;
use std::process::{Command, Output};

use vehicle_allocation::domain::{HistoryFilter, PageRequest};
use vehicle_allocation::proto::v1::allocation_service_client::AllocationServiceClient;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, ListAllocationHistoryRequest, ListEmployeesRequest,
};
use vehicle_allocation::storage::Store;
use vehicle_allocation::storage::sqlite::SqliteStore;

use crate::helpers::{AppOptions, spawn_app_with};

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"));
    command.args(args).env("RUST_LOG", "warn");
    for (key, value) in envs {
        command.env(key, value);
    }
    // A developer's .env must not leak into the test.
    command.current_dir(std::env::temp_dir());
    command.output().expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn seed_into(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "seed",
        "--data-dir",
        dir,
        "--employees",
        "40",
        "--vehicles",
        "15",
        "--allocations",
        "700",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    run(&args, &[])
}

async fn everything(dir: &Path) -> Vec<String> {
    let store = SqliteStore::open(dir).unwrap();
    let history = store
        .list_allocation_history(
            &HistoryFilter::default(),
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
        .await
        .unwrap();
    let employees = store
        .list_employees(
            None,
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
        .await
        .unwrap();
    let vehicles = store
        .list_vehicles(PageRequest {
            size: 10_000,
            after: None,
        })
        .await
        .unwrap();
    history
        .items
        .iter()
        .map(|a| format!("{a:?}"))
        .chain(employees.items.iter().map(|e| format!("{e:?}")))
        .chain(vehicles.items.iter().map(|v| format!("{v:?}")))
        .collect()
}

#[tokio::test]
async fn seed_fills_an_empty_store_refuses_a_full_one_and_resets_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let first = seed_into(dir.path(), &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout)
            .contains("seeded 40 employees, 15 vehicles with their drivers and 700 bookings"),
        "{}",
        text(&first.stdout)
    );

    let again = seed_into(dir.path(), &[]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--reset"),
        "{}",
        text(&again.stderr)
    );

    let reset = seed_into(dir.path(), &["--reset"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(everything(dir.path()).await.len(), 700 + 40 + 15);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(seed_into(a.path(), &[]).status.success());
    assert!(seed_into(b.path(), &[]).status.success());
    let (left, right) = (everything(a.path()).await, everything(b.path()).await);
    assert_eq!(left.len(), 755);
    assert_eq!(left, right);
}

#[test]
fn a_bad_setting_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    for (key, value, flag) in [
        (
            "ORG_TIMEZONE",
            "Mars/Olympus",
            "--org-timezone <ORG_TIMEZONE>",
        ),
        (
            "MAX_DAYS_AHEAD",
            "many",
            "--max-days-ahead <MAX_DAYS_AHEAD>",
        ),
        ("GRPC_ADDR", "localhost", "--grpc-addr <GRPC_ADDR>"),
        ("LOG_FORMAT", "xml", "--log-format <LOG_FORMAT>"),
    ] {
        let output = run(&["serve", "--data-dir", dir], &[(key, value)]);
        assert!(!output.status.success(), "{key}={value} was accepted");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{key}: {stderr}"
        );
    }
}

#[tokio::test]
async fn serve_demo_seeds_an_empty_store() {
    let app = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        ..AppOptions::default()
    })
    .await;
    let history = app
        .allocations
        .clone()
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.total_size, 5000);
    let employees = app
        .fleet
        .clone()
        .list_employees(ListEmployeesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(employees.total_size, 1000);
    // Demo data can be booked against at once.
    let free = app
        .fleet
        .clone()
        .list_available_vehicles(
            vehicle_allocation::proto::v1::ListAvailableVehiclesRequest {
                date: app.day(1),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_inner();
    assert!(free.total_size > 0 && free.total_size < 300);

    // A second start on the same data leaves it alone.
    let data_dir = app.stop().await;
    let again = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        data_dir: Some(data_dir),
        ..AppOptions::default()
    })
    .await;
    let history = again
        .allocations
        .clone()
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.total_size, 5000);
}

/// The binary serving on a random port, its logs read as JSON lines.
struct ServerProcess {
    child: std::process::Child,
    addr: String,
    logs: std::sync::mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(dir: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"))
            .args(["serve", "--grpc-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .current_dir(std::env::temp_dir())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the binary");
        let (lines, logs) = std::sync::mpsc::channel();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Blocks until the server says where it listens.
        let addr = logs
            .iter()
            .find_map(|line| {
                let rest = line.split("\"grpc_addr\":\"").nth(1)?;
                Some(rest.split('"').next()?.to_owned())
            })
            .expect("the server logs its address");
        Self { child, addr, logs }
    }

    async fn client(&self) -> AllocationServiceClient<tonic::transport::Channel> {
        AllocationServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

fn tomorrow() -> String {
    (chrono::Utc::now().date_naive() + chrono::Days::new(1)).to_string()
}

/// A booking for tomorrow (in UTC, the default zone) of the first seeded
/// employee and vehicle.
fn booking() -> CreateAllocationRequest {
    CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            employee_id: "emp-00001".into(),
            vehicle_id: "veh-0001".into(),
            allocation_date: tomorrow(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    server
        .client()
        .await
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap();
    server.signal("-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = server.child.wait().unwrap();
        let logs: Vec<String> = server.logs.iter().collect();
        (status, logs)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.1);
    let logs = status.1.join("\n");
    assert!(logs.contains("received SIGTERM"), "{logs}");
    assert!(logs.contains("NOT_SERVING"), "{logs}");
    assert!(logs.contains("\"message\":\"stopped\""), "{logs}");
}

#[tokio::test]
async fn an_acknowledged_booking_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fleet_only = run(
        &[
            "seed",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--employees",
            "5",
            "--vehicles",
            "5",
            "--allocations",
            "0",
        ],
        &[],
    );
    assert!(fleet_only.status.success(), "{}", text(&fleet_only.stderr));
    let mut server = ServerProcess::start(dir.path());
    let created = server
        .client()
        .await
        .create_allocation(booking())
        .await
        .unwrap()
        .into_inner();
    server.signal("-KILL");
    server.child.wait().unwrap();

    let server = ServerProcess::start(dir.path());
    let found = server
        .client()
        .await
        .get_allocation(v1::GetAllocationRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found, created);
    let mut server = server;
    server.signal("-KILL");
    server.child.wait().unwrap();
}

#[test]
fn settings_are_read_from_a_dot_env_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "ORG_TIMEZONE=Atlantis/Capital\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"))
        .args(["serve", "--data-dir", "data"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("Atlantis/Capital") && stderr.contains("ORG_TIMEZONE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_health_check_command_exits_0_only_for_a_serving_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path());
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let check = |addr: String| {
        tokio::task::spawn_blocking(move || run(&["health-check", "--grpc-addr", &addr], &[]))
    };
    // 0.0.0.0, as a container's GRPC_ADDR would say, means this host.
    let serving = check(format!("0.0.0.0:{port}")).await.unwrap();
    assert!(serving.status.success(), "{}", text(&serving.stderr));
    assert_eq!(text(&serving.stdout).trim(), "SERVING");

    server.signal("-KILL");
    server.child.wait().unwrap();
    let gone = check(format!("127.0.0.1:{port}")).await.unwrap();
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("cannot reach"),
        "{}",
        text(&gone.stderr)
    );
}
