//! The service under test as a process of its own (the release binary), so
//! its memory is its own and the load generator's CPU is not counted in it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `vehicle-allocation serve`.
pub struct ServerProcess {
    child: Child,
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
            // Per-request lines off: the load generator would measure the
            // terminal. The startup lines stay, to learn the ports.
            .env("RUST_LOG", "warn,vehicle_allocation::app=info")
            .env_remove("REDIS_URL")
            .env_remove("MONGODB_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the service");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("the service stopped before it listened")
                .expect("read the service's log");
            grpc = grpc.or_else(|| field(&line, "grpc_addr"));
            http = http.or_else(|| field(&line, "http_addr"));
            if line.contains("\"level\":\"ERROR\"") || line.contains(" ERROR ") {
                eprintln!("service: {line}");
            }
        }
        let startup = started.elapsed();
        // Keep draining the log, or the service blocks once the pipe fills.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("\"level\":\"ERROR\"") || line.contains(" ERROR ") {
                    eprintln!("service: {line}");
                }
            }
        });
        Self {
            child,
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
    }
}
