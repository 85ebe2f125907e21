//! The binary as a newcomer runs it: `seed`, `serve --demo`, bad settings.

use std::path::Path;
use std::process::{Command, Output};

use vehicle_allocation::domain::{BookingPolicy, HistoryFilter, PageRequest};
use vehicle_allocation::proto::v1::allocation_service_client::AllocationServiceClient;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, ListAllocationHistoryRequest, ListEmployeesRequest,
};
use vehicle_allocation::seed::{self, SeedPlan};
use vehicle_allocation::storage::prelude::*;
use vehicle_allocation::storage::sqlite::SqliteStore;

use crate::helpers::{AppOptions, spawn_app_with, start_time};

/// `serve` with every listener on a port of its own choosing.
const SERVE_ON_PORT_0: [&str; 5] = [
    "serve",
    "--grpc-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
];

/// The service's binary, with none of the caller's environment: a
/// developer's REDIS_URL or MAX_DAYS_AHEAD must not change what it does.
fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"));
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = binary();
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
            true,
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
        .await
        .unwrap();
    let vehicles = store
        .list_vehicles(
            true,
            vehicle_allocation::domain::fleet::timeline_start(),
            PageRequest {
                size: 10_000,
                after: None,
            },
        )
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
    assert_eq!(
        text(&again.stderr).matches("--reset").count(),
        1,
        "the error, once: {}",
        text(&again.stderr)
    );

    let reset = seed_into(dir.path(), &["--reset"]);
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    assert_eq!(everything(dir.path()).await.len(), 700 + 40 + 15);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    // The bookings are laid out around "today", and the binary takes today
    // from the system clock: two runs of it would differ whenever midnight
    // UTC fell between them. So the seeding is called here as `seed` calls
    // it, on a pinned clock.
    let plan = SeedPlan {
        employees: 40,
        vehicles: 15,
        allocations: 700,
        seed: 3,
    };
    let policy = BookingPolicy::default();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        // Closed at the end of the turn, before `everything` reopens it.
        let store = SqliteStore::open_for_loading(dir.path()).unwrap();
        let report = seed::seed(&store, &plan, &policy, start_time(), false)
            .await
            .unwrap();
        assert_eq!(report.allocations, 700);
    }
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

#[test]
fn a_missing_key_or_certificate_file_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
                ("TLS_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "TLS_CERT_FILE /nonexistent/cert.pem",
        ),
        (
            &[("AUTH_API_KEYS_FILE", "/nonexistent/keys.toml")],
            "/nonexistent/keys.toml",
        ),
        (
            &[("AUTH_JWT_JWKS_FILE", "/nonexistent/jwks.json")],
            "/nonexistent/jwks.json",
        ),
    ];
    for (envs, named) in cases {
        let output = run(&["serve", "--data-dir", data], envs);
        assert!(!output.status.success(), "{envs:?} was accepted");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(named), "{envs:?}: {stderr}");
    }
    assert!(
        !std::path::Path::new(data).exists(),
        "nothing was opened before the files were checked"
    );
}

#[test]
fn a_port_in_use_stops_startup_naming_the_setting_that_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // Held for the whole test: the port is taken, with no race.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (variable, flag, other) in [
        ("GRPC_ADDR", "--grpc-addr", "--http-addr"),
        ("HTTP_ADDR", "--http-addr", "--grpc-addr"),
    ] {
        let args = [
            "serve",
            "--data-dir",
            data,
            flag,
            &taken,
            other,
            "127.0.0.1:0",
        ];
        let output = run(&args, &[]);
        assert!(!output.status.success(), "{flag} {taken} was accepted");
        let stderr = text(&output.stderr);
        for needle in [
            taken.as_str(),
            "another process is using that port",
            variable,
            flag,
        ] {
            assert!(stderr.contains(needle), "{flag}: no {needle:?} in {stderr}");
        }
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

/// A test that fails (or forgets) must not leave its server running.
impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// With extra environment variables.
    fn start_with(dir: &Path, envs: &[(&str, &std::ffi::OsStr)]) -> Self {
        use std::io::BufRead;
        let mut command = binary();
        command
            .args(SERVE_ON_PORT_0)
            .arg("--data-dir")
            .arg(dir)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .current_dir(std::env::temp_dir())
            .stderr(std::process::Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the binary");
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

    /// Waits for a log line containing `text`.
    fn wait_for_log(&self, text: &str) -> String {
        self.logs
            .iter()
            .find(|line| line.contains(text))
            .unwrap_or_else(|| panic!("the server exited without logging {text:?}"))
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
    let output = binary()
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

#[tokio::test]
async fn sighup_reloads_the_api_key_file_so_a_revoked_key_stops_working() {
    use crate::helpers::Cred;
    use crate::identity::key_entry;
    use vehicle_allocation::proto::v1::fleet_service_client::FleetServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let both = format!(
        "{}{}",
        key_entry("old-service", "old-key", &["auditor"]),
        key_entry("new-service", "new-key", &["auditor"])
    );
    std::fs::write(&keys, both).unwrap();
    let server = ServerProcess::start_with(dir.path(), &[("AUTH_API_KEYS_FILE", keys.as_os_str())]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let call = |key: &str| {
        let mut client = FleetServiceClient::new(channel.clone());
        let request = Cred::ApiKey(key.into()).grpc(ListEmployeesRequest::default());
        async move { client.list_employees(request).await }
    };
    call("old-key").await.unwrap();
    call("new-key").await.unwrap();

    std::fs::write(&keys, key_entry("new-service", "new-key", &["auditor"])).unwrap();
    server.signal("-HUP");
    server.wait_for_log("reloaded the API key file");
    let status = call("old-key").await.unwrap_err();
    crate::helpers::assert_status(&status, tonic::Code::Unauthenticated, "API_KEY_INVALID");
    call("new-key").await.unwrap();

    // A file broken by mistake leaves the keys in force.
    std::fs::write(&keys, "[[key]]\nname = ").unwrap();
    server.signal("-HUP");
    server.wait_for_log("keeping the keys in force");
    call("new-key").await.unwrap();
    server.signal("-TERM");
}

#[tokio::test]
async fn sighup_reloads_the_tls_certificate_for_new_connections() {
    use crate::identity::TestPki;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let pki = TestPki::new();
    let first = pki.server("server");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        dir.path(),
        &[
            ("TLS_CERT_FILE", first.cert_file.as_os_str()),
            ("TLS_KEY_FILE", first.key_file.as_os_str()),
        ],
    );
    vehicle_allocation::tls::install_default_provider();
    let served_certificate = || async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let pem_der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(served_certificate().await, pem_der(&first.cert_pem));

    // The renewed certificate is written over the same files.
    let renewed = pki.server("renewed");
    std::fs::copy(&renewed.cert_file, &first.cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &first.key_file).unwrap();
    server.signal("-HUP");
    server.wait_for_log("reloaded the TLS certificates");
    assert_eq!(served_certificate().await, pem_der(&renewed.cert_pem));
    server.signal("-TERM");
}

#[test]
fn the_token_command_prints_a_token_the_service_accepts_and_refuses_without_a_secret() {
    let output = run(
        &[
            "token",
            "--employee",
            "emp-00042",
            "--role",
            "employee",
            "--ttl",
            "8h",
        ],
        &[(
            "AUTH_JWT_HS256_SECRET",
            "dev-secret-0123456789abcdef01234567",
        )],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let token = text(&output.stdout).trim().to_owned();
    let config = vehicle_allocation::auth::jwt::JwtConfig {
        keys: vehicle_allocation::auth::jwt::KeySource::Hs256(
            "dev-secret-0123456789abcdef01234567".into(),
        ),
        issuer: None,
        audience: None,
        employee_claim: "sub".into(),
        roles_claim: "roles".into(),
        jwks_refresh: std::time::Duration::from_secs(300),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let principal = runtime.block_on(async {
        let verifier = vehicle_allocation::auth::jwt::JwtVerifier::open(config)
            .await
            .unwrap();
        // The token is valid for 8 hours from when it was made, and then
        // (past the minute of leeway) no more.
        let made = chrono::Utc::now();
        let late = made + chrono::Duration::hours(8) + chrono::Duration::seconds(61);
        assert!(verifier.verify(&token, late).await.is_err());
        verifier
            .verify(&token, made + chrono::Duration::hours(7))
            .await
            .unwrap()
    });
    assert_eq!(principal.id, "emp-00042");
    assert_eq!(
        principal.roles.iter().copied().collect::<Vec<_>>(),
        [vehicle_allocation::domain::access::Role::Employee]
    );

    let output = run(&["token", "--employee", "e", "--role", "employee"], &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("AUTH_JWT_HS256_SECRET"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn a_second_process_on_a_data_directory_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let pid = server.child.id().to_string();
    let data_dir = dir.path().to_str().unwrap();
    let serve = [&SERVE_ON_PORT_0[..], &["--data-dir", data_dir]].concat();
    for args in [&serve[..], &["seed", "--data-dir", data_dir]] {
        let output = run(args, &[]);
        assert!(!output.status.success(), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("in use by another process") && stderr.contains(&format!("pid {pid}")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_failed_start_ends_with_its_error_after_the_lines_logged_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data_dir = dir.path().to_str().unwrap();
    let output = run(
        &[
            "serve",
            "--data-dir",
            data_dir,
            "--grpc-addr",
            &addr,
            "--http-addr",
            "127.0.0.1:0",
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Log lines wait in a batch for up to 50 ms; the error comes after them.
    assert!(
        lines.len() >= 2,
        "no line logged before the error: {stderr}"
    );
    assert!(lines.last().unwrap().starts_with("error: "), "{stderr}");
}

/// The example files of the README, from the repository.
fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/import")
        .join(name)
        .display()
        .to_string()
}

#[tokio::test]
async fn import_loads_the_example_files_once_refuses_bad_rows_whole_and_serves_what_it_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let (drivers, vehicles, employees) = (
        example("drivers.csv"),
        example("vehicles.csv"),
        example("employees.csv"),
    );
    let import_args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["import", "--data-dir", data_dir]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_import = |extra: &[&str]| {
        let args = import_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[])
    };
    let all = [
        "--drivers",
        drivers.as_str(),
        "--vehicles",
        vehicles.as_str(),
        "--employees",
        employees.as_str(),
    ];

    let dry = run_import(&[&all[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let plan = text(&dry.stdout);
    assert!(
        plan.starts_with(&format!("create driver \"drv-ada\" ({drivers}:2)\n")),
        "{plan}"
    );
    assert!(
        plan.ends_with(
            "dry run: nothing was written\n\
             drivers: 3 to create, 0 to update, 0 unchanged\n\
             vehicles: 3 to create, 0 to update, 0 unchanged\n\
             employees: 3 to create, 0 to update, 0 unchanged\n"
        ),
        "{plan}"
    );

    let first = run_import(&all);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let said = text(&first.stdout);
    assert!(said.starts_with("imported into "), "{said}");
    assert!(
        said.ends_with(
            "drivers: 3 created, 0 updated, 0 unchanged\n\
             vehicles: 3 created, 0 updated, 0 unchanged\n\
             employees: 3 created, 0 updated, 0 unchanged\n"
        ),
        "{said}"
    );

    // The same rows again, the employees as JSON Lines this time.
    let jsonl = example("employees.jsonl");
    let again = run_import(&[&all[..4], &["--employees", jsonl.as_str()]].concat());
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        "nothing to change: the store already holds these rows\n\
         drivers: 0 created, 0 updated, 3 unchanged\n\
         vehicles: 0 created, 0 updated, 3 unchanged\n\
         employees: 0 created, 0 updated, 3 unchanged\n"
    );

    // One good row and two bad ones: nothing is written.
    let bad = dir.path().join("more-employees.csv");
    std::fs::write(
        &bad,
        "id,name,email,department\n\
         emp-0004,Good Row,good.row@example.org,Sales\n\
         emp-0005,,not-an-address,Sales\n\
         emp-0006,Taken Address,priya.shah@example.org,\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let refused = run_import(&["--employees", bad.as_str()]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(text(&refused.stdout), "");
    assert_eq!(
        text(&refused.stderr),
        format!(
            "{bad}:3: name: FIELD_REQUIRED: name is required\n\
             {bad}:3: email: INVALID_VALUE: email \"not-an-address\" is not an e-mail address\n\
             {bad}:4: email: EMAIL_TAKEN: employee email \"priya.shah@example.org\" is already taken by employee \"emp-0001\"\n\
             error: 3 problem(s) in the files; nothing was written\n"
        )
    );

    // What was imported serves at once: an imported employee books an
    // imported vehicle, which carries its imported driver.
    let server = ServerProcess::start(dir.path());
    let booked = server
        .client()
        .await
        .create_allocation(CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: "emp-0001".into(),
                vehicle_id: "veh-van-1".into(),
                allocation_date: tomorrow(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(booked.driver_id, "drv-ada");
    let mut fleet =
        vehicle_allocation::proto::v1::fleet_service_client::FleetServiceClient::connect(format!(
            "http://{}",
            server.addr
        ))
        .await
        .unwrap();
    let employees = fleet
        .list_employees(ListEmployeesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = employees.employees.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["emp-0001", "emp-0002", "emp-0003"],
        "no row of the refused file"
    );
}

#[test]
fn an_import_whose_cache_invalidation_cannot_reach_redis_says_so_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let drivers = example("drivers.csv");
    // Nothing listens on the discard port: every Redis call fails.
    let unreachable = [
        ("REDIS_URL", "redis://127.0.0.1:9"),
        ("REDIS_TIMEOUT_MS", "200"),
    ];
    let args = [
        "import",
        "--data-dir",
        data_dir,
        "--drivers",
        drivers.as_str(),
    ];
    let output = run(&args, &unreachable);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains(
            "the data was written, but Redis could not be told: running services may serve the old data for up to CACHE_TTL"
        ),
        "{}",
        text(&output.stderr)
    );
    // Written all the same.
    let again = run(&args, &[]);
    assert!(
        text(&again.stdout).contains("drivers: 0 created, 0 updated, 3 unchanged"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn erase_employee_pseudonymises_the_stored_employee_once_and_names_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let employees = example("employees.csv");
    let imported = run(
        &["import", "--data-dir", data_dir, "--employees", &employees],
        &[],
    );
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let erasure = vehicle_allocation::domain::admin::Erasure::of("emp-0001");

    let erased = run(&["erase-employee", "--data-dir", data_dir, "emp-0001"], &[]);
    assert!(erased.status.success(), "{}", text(&erased.stderr));
    assert_eq!(
        text(&erased.stdout),
        format!(
            "erased employee emp-0001: now {} <{}>, deactivated\n",
            erasure.name, erasure.email
        )
    );
    // Neither the record nor the import's event holds the name or e-mail.
    let file = dir
        .path()
        .join(vehicle_allocation::storage::sqlite::DATABASE_FILE);
    let conn = rusqlite::Connection::open(&file).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    for personal in ["Priya Shah", "priya.shah@example.org"] {
        assert_eq!(
            count(&format!(
                "SELECT (SELECT count(*) FROM employees WHERE name = '{personal}' OR email = '{personal}')
                      + (SELECT count(*) FROM events WHERE instr(coalesce(before, '') || coalesce(after, ''), '{personal}') > 0)"
            )),
            0,
            "{personal} is still stored"
        );
    }
    assert_eq!(
        count(
            "SELECT count(*) FROM events WHERE kind = 'employee.erased' AND actor_id = 'system:erase-employee'"
        ),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM employees WHERE name = 'Tom Baker'"),
        1,
        "the others stay"
    );
    drop(conn);

    let again = run(&["erase-employee", "--data-dir", data_dir, "emp-0001"], &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        "employee emp-0001 was erased already: nothing changed\n"
    );

    let unknown = run(
        &["erase-employee", "--data-dir", data_dir, "emp-nobody"],
        &[],
    );
    assert!(!unknown.status.success());
    let said = text(&unknown.stderr);
    assert!(said.contains("emp-nobody"), "{said}");
}

#[tokio::test]
async fn a_demo_start_keeps_every_event_of_the_demo_made_at_the_seeds_clock() {
    let app = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        ..AppOptions::default()
    })
    .await;
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        app.faults.pruning_passes(1),
    )
    .await
    .expect("the pruning at startup ends");
    let seeded = 1000 + 300 + 300 + 5000;
    assert_eq!(app.newest_event().await, seeded);
    let events = app.events_after(&app.admin, 0).await.unwrap();
    assert_eq!(events.len(), seeded as usize, "none pruned");
    assert_eq!(events[0].sequence, 1);

    let made = prost_types::Timestamp {
        seconds: start_time().timestamp(),
        nanos: 0,
    };
    let (mut employees, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = app
            .fleet
            .clone()
            .list_employees(ListEmployeesRequest {
                page_size: 500,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        employees.extend(page.employees);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(employees.len(), 1000);
    assert!(
        employees
            .iter()
            .all(|e| e.create_time.as_ref() == Some(&made))
    );
}

/// An app with an empty store and two API keys: `admin-key` of a fleet
/// administrator, `agent-key` of a booking agent.
async fn app_for_imports() -> (crate::helpers::TestApp, tempfile::TempDir) {
    use crate::identity::key_entry;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "{}{}",
            key_entry("hr-import", "admin-key", &["fleet_admin"]),
            key_entry("gate", "agent-key", &["booking_agent"])
        ),
    )
    .unwrap();
    let app = spawn_app_with(AppOptions {
        fleet: false,
        auth: vehicle_allocation::auth::AuthSettings {
            api_keys_file: Some(keys),
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    (app, dir)
}

/// `args` run by the binary beside the test's server (whose runtime must
/// keep serving meanwhile).
async fn run_beside(args: Vec<String>, envs: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(&args, &envs)
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The output with the line naming where the rows went and how long it
/// took left out: the rest is the report.
fn report(output: &Output) -> (String, String) {
    let stdout = text(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("imported into "))
        .map(|line| format!("{line}\n"))
        .collect();
    (stdout, text(&output.stderr))
}

async fn stored_employees(app: &crate::helpers::TestApp) -> Vec<String> {
    let mut ids: Vec<String> = app
        .store
        .list_employees(
            None,
            true,
            PageRequest {
                size: 100,
                after: None,
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn import_with_server_reports_as_a_local_import_and_writes_all_or_nothing() {
    let (app, _keys) = app_for_imports().await;
    let local = tempfile::tempdir().unwrap();
    let local_dir = local.path().to_str().unwrap().to_owned();
    let server = format!("http://{}", app.channel_addr());
    let (drivers, vehicles, employees) = (
        example("drivers.csv"),
        example("vehicles.csv"),
        example("employees.csv"),
    );
    let all = [
        "--drivers",
        drivers.as_str(),
        "--vehicles",
        vehicles.as_str(),
        "--employees",
        employees.as_str(),
    ];
    let admin = || vec![("IMPORT_API_KEY", "admin-key".to_owned())];
    // The same import, here and through the server.
    let both = |extra: Vec<&str>| {
        let here = strings(&[&["import", "--data-dir", &local_dir], &extra[..]].concat());
        let there = strings(&[&["import", "--server", &server], &extra[..]].concat());
        async move {
            let here = run_beside(here, vec![]).await;
            let there = run_beside(there, admin()).await;
            (here, there)
        }
    };

    let (here, there) = both([&all[..], &["--dry-run"]].concat()).await;
    assert!(there.status.success(), "{}", text(&there.stderr));
    assert_eq!(report(&there), report(&here));
    assert!(text(&there.stdout).contains("dry run: nothing was written"));
    assert!(
        stored_employees(&app).await.is_empty(),
        "a dry run writes nothing"
    );

    let (here, there) = both(all.to_vec()).await;
    assert!(there.status.success(), "{}", text(&there.stderr));
    assert_eq!(report(&there), report(&here));
    assert!(
        text(&there.stdout).starts_with(&format!("imported into the service at {server} in ")),
        "{}",
        text(&there.stdout)
    );
    assert_eq!(
        stored_employees(&app).await,
        ["emp-0001", "emp-0002", "emp-0003"]
    );

    // A good row and a bad one, the bad one's e-mail taken in the store.
    let bad = local.path().join("more-employees.csv");
    std::fs::write(
        &bad,
        "id,name,email,department\n\
         emp-0004,Good Row,good.row@example.org,Sales\n\
         emp-0006,Taken Address,priya.shah@example.org,\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let (here, there) = both(vec!["--employees", bad.as_str()]).await;
    assert_eq!(there.status.code(), Some(1));
    assert_eq!(report(&there), report(&here));
    assert!(
        text(&there.stderr).contains("EMAIL_TAKEN"),
        "{}",
        text(&there.stderr)
    );
    assert_eq!(
        stored_employees(&app).await,
        ["emp-0001", "emp-0002", "emp-0003"],
        "nothing of the refused file"
    );
}

#[tokio::test]
async fn import_with_server_refuses_a_caller_who_is_not_a_fleet_admin() {
    let (app, _keys) = app_for_imports().await;
    let server = format!("http://{}", app.channel_addr());
    let employees = example("employees.csv");
    for envs in [
        vec![("IMPORT_API_KEY", "agent-key".to_owned())],
        vec![],
        vec![("IMPORT_API_KEY", "no-such-key".to_owned())],
    ] {
        let output = run_beside(
            strings(&["import", "--server", &server, "--employees", &employees]),
            envs.clone(),
        )
        .await;
        assert_eq!(output.status.code(), Some(1), "{envs:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("the service refused the import")
                && stderr.contains("nothing was written"),
            "{envs:?}: {stderr}"
        );
    }
    assert!(stored_employees(&app).await.is_empty());
}

#[tokio::test]
async fn import_beside_a_service_holding_the_data_directory_sends_the_rows_to_it() {
    let (app, _keys) = app_for_imports().await;
    let data_dir = app.data_dir.path().to_str().unwrap().to_owned();
    let addr = app.channel_addr().to_string();
    let employees = example("employees.csv");
    let output = run_beside(
        strings(&[
            "import",
            "--data-dir",
            &data_dir,
            "--grpc-addr",
            &addr,
            "--employees",
            &employees,
        ]),
        vec![("IMPORT_API_KEY", "admin-key".to_owned())],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("is in use by a running service (pid")
            && stderr.contains(&format!(
                "sending the rows to it at GRPC_ADDR http://{addr}"
            )),
        "{stderr}"
    );
    assert_eq!(
        stored_employees(&app).await,
        ["emp-0001", "emp-0002", "emp-0003"]
    );
}

/// `ImportFleet`'s first message and a chunk of `n` employees.
fn import_messages(n: usize) -> Vec<v1::ImportFleetRequest> {
    use v1::import_fleet_request::Step;
    let rows = (0..n)
        .map(|i| v1::ImportRow {
            entity: Some(v1::import_row::Entity::Employee(v1::ImportEmployee {
                id: format!("emp-{i}"),
                name: format!("Person {i}"),
                email: format!("person.{i}@example.org"),
                department: String::new(),
            })),
        })
        .collect();
    vec![
        v1::ImportFleetRequest {
            step: Some(Step::Start(v1::ImportPass::Apply.into())),
        },
        v1::ImportFleetRequest {
            step: Some(Step::Rows(v1::ImportRows { rows })),
        },
    ]
}

#[tokio::test]
async fn import_fleet_takes_one_pass_at_a_time_and_bounded_chunks() {
    use crate::helpers::Cred;
    let (app, _keys) = app_for_imports().await;
    let admin = Cred::ApiKey("admin-key".into());
    // A pass that holds on: its stream stays open.
    let (held, held_rows) = tokio::sync::mpsc::channel(4);
    let mut first = app
        .fleet
        .clone()
        .import_fleet(admin.grpc(tokio_stream::wrappers::ReceiverStream::new(held_rows)))
        .await
        .unwrap()
        .into_inner();
    let second = app
        .fleet
        .clone()
        .import_fleet(admin.grpc(tokio_stream::iter(import_messages(1))))
        .await
        .unwrap_err();
    crate::helpers::assert_status(&second, tonic::Code::ResourceExhausted, "IMPORT_RUNNING");

    // More rows in a message than allowed end the pass, writing nothing.
    for message in import_messages(1001) {
        held.send(message).await.unwrap();
    }
    let refused = first.message().await.unwrap_err();
    crate::helpers::assert_status(&refused, tonic::Code::InvalidArgument, "FIELD_TOO_LONG");
    assert!(refused.message().contains("at most 1000"), "{refused:?}");
    assert!(stored_employees(&app).await.is_empty());

    // The next pass may run once the first has ended.
    let mut messages = import_messages(1000);
    messages.push(v1::ImportFleetRequest {
        step: Some(v1::import_fleet_request::Step::Finish(v1::ImportFinish {})),
    });
    let mut answers = app
        .fleet
        .clone()
        .import_fleet(admin.grpc(tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner();
    let verdicts = answers.message().await.unwrap().unwrap();
    assert!(matches!(
        verdicts.answer,
        Some(v1::import_fleet_response::Answer::Verdicts(v)) if v.verdicts.len() == 1000
    ));
    let finished = answers.message().await.unwrap().unwrap();
    assert!(matches!(
        finished.answer,
        Some(v1::import_fleet_response::Answer::Finished(_))
    ));
    assert_eq!(
        app.store
            .list_employees(
                None,
                true,
                PageRequest {
                    size: 10,
                    after: None
                }
            )
            .await
            .unwrap()
            .total_size,
        1000
    );
}

#[tokio::test]
async fn an_import_message_without_rows_ends_the_pass() {
    use crate::helpers::Cred;
    let (app, _keys) = app_for_imports().await;
    let admin = Cred::ApiKey("admin-key".into());
    // An empty message would reset the silence timer while sending nothing:
    // a way to hold the store's writer without importing anything.
    let refused = app
        .fleet
        .clone()
        .import_fleet(admin.grpc(tokio_stream::iter(import_messages(0))))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap_err();
    crate::helpers::assert_status(&refused, tonic::Code::InvalidArgument, "INVALID_VALUE");
    assert!(
        refused.message().contains("at least one row"),
        "{refused:?}"
    );
}
