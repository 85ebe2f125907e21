//! The service under test as a process of its own (the release binary), so
//! its memory is its own and the load generator's CPU is not counted in it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `vehicle-allocation serve`.
pub struct ServerProcess {
    child: Child,
    log: PathBuf,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// From spawning the process to both servers listening.
    pub startup: Duration,
}

fn field(line: &str, name: &str) -> Option<SocketAddr> {
    if let Some(rest) = line.split(&format!("\"{name}\":\"")).nth(1) {
        return rest.split('"').next()?.parse().ok();
    }
    // A text line: `... name=value ...`.
    let rest = line.split(&format!(" {name}=")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

impl ServerProcess {
    /// Starts the binary on `data_dir` with `env` added, on free ports.
    pub fn start(binary: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let started = Instant::now();
        let mut command = Command::new(binary);
        command
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            // Far enough ahead that creates never run out of free days.
            .args(["--max-days-ahead", "3000", "--data-dir"])
            .arg(data_dir)
            .env("LOG_FORMAT", "json")
            // The seeded history's events stay: pruning years of them on
            // the first start is a one-off, not what a request costs.
            .env("EVENT_RETENTION_DAYS", "36500")
            // Per-request lines off (their cost is measured on its own, in
            // the telemetry rounds). The startup lines stay, to learn the
            // ports.
            .env("RUST_LOG", "warn,vehicle_allocation::app=info")
            .env_remove("REDIS_URL")
            .env_remove("MONGODB_URL")
            .stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        // The log goes to a file, as under an orchestrator: read by a
        // thread of this process, it would take the load generator's CPU.
        let log = data_dir.with_extension("log");
        let file = std::fs::File::create(&log).expect("create the service's log");
        command.stderr(file);
        let mut child = command.spawn().expect("start the service");
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            if let Some(status) = child.try_wait().expect("the service's status") {
                report_errors(&log);
                panic!("the service stopped before it listened: {status}");
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            for line in text.lines() {
                grpc = grpc.or_else(|| field(line, "grpc_addr"));
                http = http.or_else(|| field(line, "http_addr"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let startup = started.elapsed();
        Self {
            child,
            log,
            grpc: grpc.expect("gRPC address"),
            http: http.expect("HTTP address"),
            startup,
        }
    }

    /// The largest resident set the process has had, in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Stops the service the way an orchestrator would.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        report_errors(&self.log);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Shows the error lines of the service's log.
fn report_errors(log: &Path) {
    let Ok(file) = std::fs::File::open(log) else {
        return;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        if line.contains("\"level\":\"ERROR\"") || line.contains(" ERROR ") {
            eprintln!("service: {line}");
        }
    }
}
