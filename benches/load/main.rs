//! The load benchmark: seeds a store, starts the release service, and
//! drives load over real connections, side by side with a bare tonic echo
//! server as the ceiling measured in the same run.
//!
//!     cargo bench --bench load -- --help
//!
//! Each call is measured at a high number of requests in flight (for
//! throughput) and a low one (for latency without queueing). gRPC results
//! are given as a ratio to the echo's throughput; REST results as the ratio
//! of their latency to the same call over gRPC.

mod dataset;
mod driver;
mod echo;
mod import;
mod report;
mod server;
mod telemetry;
mod tokens;
mod workload;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;

use dataset::Size;
use driver::Load;
use report::{Report, Row};
use server::ServerProcess;

/// Benchmarks the service against a bare tonic echo server.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    employees: usize,
    #[arg(long, default_value_t = 1000)]
    vehicles: usize,
    #[arg(long, default_value_t = 1_000_000)]
    allocations: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Employees in the file of the import run.
    #[arg(long, default_value_t = 100_000)]
    import_employees: usize,
    /// Requests in flight for the throughput runs.
    #[arg(long, default_value_t = 128)]
    in_flight: usize,
    /// Requests in flight for the latency runs.
    #[arg(long, default_value_t = 4)]
    latency_in_flight: usize,
    /// HTTP/2 connections the gRPC clients spread their calls over.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds each run is measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds each run warms up first, unmeasured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Rounds of the telemetry comparison (the echo and three
    /// configurations of the service taking turns).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Only runs whose name contains one of these (comma-separated).
    #[arg(long)]
    only: Option<String>,
    /// Redis for the shared-cache runs; skipped when it does not answer.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Run this build of the service instead of the one cargo built with
    /// the benchmark (to compare two builds side by side).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where seeded data sets are kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    data_root: PathBuf,
    /// Internal: serve the echo on this address (the benchmark runs itself
    /// as the echo server).
    #[arg(long, hide = true)]
    serve_echo: Option<SocketAddr>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(addr) = args.serve_echo {
        echo::serve(addr);
        return;
    }
    // reqwest's TLS, unused here but built, needs the process's provider.
    vehicle_allocation::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(&args));
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()).expect("write the JSON report");
        eprintln!("wrote {}", path.display());
    }
}

/// Starts this benchmark binary as the echo server; returns it and its
/// address.
fn start_echo() -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--serve-echo", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the echo server's address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .expect("the echo server's address");
    (child, addr)
}

async fn run(args: &Args) -> Report {
    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vehicle-allocation")));
    let size = Size {
        employees: args.employees,
        vehicles: args.vehicles,
        allocations: args.allocations,
        seed: args.seed,
    };
    let scratch = args.data_root.join("run");
    let seeding = dataset::prepare(&binary, &args.data_root, size, &scratch);
    let mut report = Report::new(size, seeding);
    let loads = [
        Load {
            in_flight: args.in_flight,
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
        },
        Load {
            in_flight: args.latency_in_flight,
            warmup: Duration::from_secs_f64(args.warmup),
            duration: Duration::from_secs_f64(args.duration),
        },
    ];
    let wanted = |name: &str| {
        args.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|part| name.contains(part)))
    };

    if wanted("import") {
        let (first, again) = import::measure(&binary, &args.data_root, args.import_employees);
        report.import(
            &format!("import {} new employees", args.import_employees),
            first,
        );
        report.import(
            &format!(
                "import the same {} again (unchanged)",
                args.import_employees
            ),
            again,
        );
    }

    // The ceiling.
    let (mut echo_process, echo_addr) = start_echo();
    if wanted("echo") {
        for load in loads {
            let outcome = workload::echo(echo_addr, args.connections, load).await;
            report.push(Row::new("echo", "grpc", load, outcome));
        }
    }
    // Side by side with the echo, in rounds.
    if wanted("telemetry") {
        let rounds = telemetry::compare(
            &binary,
            &scratch,
            echo_addr,
            args.connections,
            size,
            loads[0],
            args.rounds,
        )
        .await;
        report.telemetry = Some(rounds);
    }
    let _ = echo_process.kill();
    let _ = echo_process.wait();

    let redis = redis_answers(&args.redis_url).then(|| args.redis_url.clone());
    let prefix = format!("va-bench:{}", std::process::id());
    let jwks = tokens::EsKey::new(&args.data_root);
    let servers: Vec<(&str, Vec<(&str, String)>)> = {
        let mut servers = vec![
            ("in-process cache", vec![]),
            (
                "in-process cache, HS256 token",
                vec![("AUTH_JWT_HS256_SECRET", tokens::HS256_SECRET.into())],
            ),
            (
                "in-process cache, ES256 token",
                vec![("AUTH_JWT_JWKS_FILE", jwks.jwks_file.display().to_string())],
            ),
            ("no cache", vec![("CACHE_TTL", "0".into())]),
            // Last: its blocks stay in the data directory.
            (
                "no cache, 1 in 10 vehicles blocked",
                vec![("CACHE_TTL", "0".into())],
            ),
        ];
        match &redis {
            Some(url) => servers.insert(
                1,
                (
                    "redis cache",
                    vec![("REDIS_URL", url.clone()), ("CACHE_PREFIX", prefix)],
                ),
            ),
            None => eprintln!("SKIPPED: the Redis runs (no Redis at {})", args.redis_url),
        }
        servers
    };
    for (cache, env) in servers {
        // A server none of whose runs is wanted is not started.
        if !workload::scenarios(cache)
            .iter()
            .any(|s| wanted(&format!("{} [{cache}]", s.name)))
        {
            continue;
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = ServerProcess::start(&binary, &scratch, &env);
        report.server(cache, server.startup);
        let token = if cache.contains("HS256") {
            Some(tokens::hs256())
        } else if cache.contains("ES256") {
            Some(jwks.token())
        } else {
            None
        };
        if cache.contains("blocked") {
            workload::block_vehicles(&server, size, 10).await;
        }
        let setup = workload::Setup::new(&server, args.connections, size, token).await;
        for scenario in workload::scenarios(cache) {
            let name = format!("{} [{cache}]", scenario.name);
            if !wanted(&name) {
                continue;
            }
            for load in loads {
                let outcome = if scenario.name.ends_with("watched") {
                    let (outcome, lag) = setup.run_watched(&scenario, load).await;
                    report.watch(&name, load.in_flight, lag);
                    outcome
                } else {
                    setup.run(&scenario, load).await
                };
                report.push(Row::new(&name, scenario.transport, load, outcome));
            }
        }
        report.peak_rss(cache, server.peak_rss());
        server.stop();
    }
    report
}

fn redis_answers(url: &str) -> bool {
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
        .is_ok()
}
