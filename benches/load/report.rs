//! The results: a table for people, JSON for tools.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::dataset::Size;
use crate::driver::{Load, Outcome};

/// One measured run.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub transport: String,
    pub in_flight: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// gRPC: throughput over the echo's; REST: mean latency over gRPC's.
    pub ratio: Option<f64>,
    pub ratio_of: Option<&'static str>,
}

impl Row {
    pub fn new(name: &str, transport: &str, load: Load, outcome: Outcome) -> Self {
        Self {
            name: name.to_owned(),
            transport: transport.to_owned(),
            in_flight: load.in_flight,
            outcome,
            ratio: None,
            ratio_of: None,
        }
    }
}

/// A service process's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFigures {
    pub cache: String,
    pub startup_ms: f64,
    pub peak_rss_mb: Option<f64>,
}

/// Everything one benchmark run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub size: Size,
    /// When the data set was seeded in this run.
    pub seeding_s: Option<f64>,
    pub servers: Vec<ServerFigures>,
    /// Whole `import` processes: what, and seconds.
    pub imports: Vec<(String, f64)>,
    pub rows: Vec<Row>,
    /// Runs with a `WatchEvents` subscriber: the run, in flight, its lag.
    pub watches: Vec<(String, usize, crate::workload::WatchLag)>,
    /// What telemetry costs, when measured.
    pub telemetry: Option<crate::telemetry::Rounds>,
}

impl Report {
    pub fn new(size: Size, seeding: Option<Duration>) -> Self {
        Self {
            size,
            seeding_s: seeding.map(|d| d.as_secs_f64()),
            servers: Vec::new(),
            imports: Vec::new(),
            rows: Vec::new(),
            watches: Vec::new(),
            telemetry: None,
        }
    }

    pub fn server(&mut self, cache: &str, startup: Duration) {
        self.servers.push(ServerFigures {
            cache: cache.to_owned(),
            startup_ms: startup.as_secs_f64() * 1000.0,
            peak_rss_mb: None,
        });
    }

    pub fn import(&mut self, what: &str, took: Duration) {
        eprintln!("{what}: {:.2} s", took.as_secs_f64());
        self.imports.push((what.to_owned(), took.as_secs_f64()));
    }

    pub fn peak_rss(&mut self, cache: &str, bytes: u64) {
        if let Some(server) = self.servers.iter_mut().find(|s| s.cache == cache) {
            server.peak_rss_mb = Some(bytes as f64 / (1024.0 * 1024.0));
        }
    }

    /// Adds a row, with its ratio to the echo (gRPC) or to the same call
    /// over gRPC (REST), measured at the same number in flight.
    pub fn push(&mut self, mut row: Row) {
        if row.transport == "rest" {
            let grpc = self.rows.iter().find(|r| {
                r.transport == "grpc" && r.name == row.name && r.in_flight == row.in_flight
            });
            if let Some(grpc) = grpc {
                // The mean, not the p50: under load HTTP/2 streams queue
                // unevenly (low p50, long tail) where HTTP/1.1 connections
                // do not, so p50s would compare shapes, not costs.
                row.ratio = Some(row.outcome.mean_ms / grpc.outcome.mean_ms);
                row.ratio_of = Some("mean latency / gRPC");
            }
        } else if row.name != "echo" {
            let echo = self
                .rows
                .iter()
                .find(|r| r.name == "echo" && r.in_flight == row.in_flight);
            if let Some(echo) = echo {
                row.ratio = Some(row.outcome.per_second / echo.outcome.per_second);
                row.ratio_of = Some("throughput / echo");
            }
        }
        eprintln!(
            "{:<58} {:>4} {:>4} {:>9.0}/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
            row.name,
            row.transport,
            row.in_flight,
            row.outcome.per_second,
            row.outcome.p50_ms,
            row.outcome.p99_ms
        );
        self.rows.push(row);
    }

    pub fn watch(&mut self, name: &str, in_flight: usize, lag: crate::workload::WatchLag) {
        eprintln!(
            "{name} {in_flight}: the subscriber received {} events, lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lag.events, lag.p50_ms, lag.p99_ms, lag.max_ms
        );
        self.watches.push((name.to_owned(), in_flight, lag));
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.size;
        let _ = writeln!(
            out,
            "\ndata: {} employees, {} vehicles, {} allocations (seed {}){}",
            s.employees,
            s.vehicles,
            s.allocations,
            s.seed,
            self.seeding_s
                .map(|t| format!("; seeded in {t:.1} s"))
                .unwrap_or_default()
        );
        for (what, seconds) in &self.imports {
            let _ = writeln!(out, "{what}: {seconds:.2} s (whole process)");
        }
        for server in &self.servers {
            let _ = writeln!(
                out,
                "server [{}]: started in {:.0} ms, peak RSS {}",
                server.cache,
                server.startup_ms,
                server
                    .peak_rss_mb
                    .map(|mb| format!("{mb:.1} MB"))
                    .unwrap_or_else(|| "-".into())
            );
        }
        let _ = writeln!(
            out,
            "\n| call | via | in flight | req/s | mean ms | p50 ms | p90 ms | p99 ms | errors | ratio |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
        );
        for row in &self.rows {
            let o = &row.outcome;
            let ratio = match (row.ratio, row.ratio_of) {
                (Some(r), Some(of)) => format!("{r:.2} ({of})"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
                row.name,
                row.transport,
                row.in_flight,
                o.per_second,
                o.mean_ms,
                o.p50_ms,
                o.p90_ms,
                o.p99_ms,
                o.errors,
                ratio
            );
        }
        for (name, in_flight, lag) in &self.watches {
            let _ = writeln!(
                out,
                "\n{name} at {in_flight} in flight: one WatchEvents subscriber received {} events, lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                lag.events, lag.p50_ms, lag.p99_ms, lag.max_ms
            );
        }
        if let Some(rounds) = &self.telemetry {
            out.push_str(&rounds.table());
        }
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }
}
