//! What telemetry costs: cached GetAllocation on the echo and on the
//! service in three configurations, taking turns in rounds, so that the
//! machine's drift over a run falls on all of them alike and each ratio
//! compares runs measured next to each other.

use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;

use crate::dataset::Size;
use crate::driver::Load;
use crate::server::ServerProcess;
use crate::workload::{self, Call, Scenario, Setup};

/// The configurations compared, with the environment each adds.
pub const CONFIGURATIONS: [(&str, &[(&str, &str)]); 3] = [
    // The defaults: a text line per request, metrics on, traces off.
    ("default", &[("RUST_LOG", "info"), ("LOG_FORMAT", "text")]),
    // As every other run of the benchmark: warnings only, metrics on.
    ("quiet", &[]),
    ("metrics off", &[("METRICS", "false")]),
];

const GET: Scenario = Scenario {
    name: "GetAllocation",
    transport: "grpc",
    call: Call::Get,
};

/// Throughput per round: the echo's, then each configuration's in the
/// order of [`CONFIGURATIONS`].
#[derive(Debug, Clone, Serialize)]
pub struct Rounds {
    pub in_flight: usize,
    pub echo: Vec<f64>,
    pub configurations: Vec<(String, Vec<f64>)>,
}

/// Runs `rounds` rounds; each measures the echo and every configuration
/// once, starting from a different one each round. A configuration's
/// service is started for its turn and stopped after it.
pub async fn compare(
    binary: &Path,
    scratch: &Path,
    echo: SocketAddr,
    connections: usize,
    size: Size,
    load: Load,
    rounds: usize,
) -> Rounds {
    let mut result = Rounds {
        in_flight: load.in_flight,
        echo: Vec::new(),
        configurations: CONFIGURATIONS
            .iter()
            .map(|(name, _)| ((*name).to_owned(), Vec::new()))
            .collect(),
    };
    let turns = CONFIGURATIONS.len() + 1;
    for round in 0..rounds {
        for turn in 0..turns {
            // Turn 0 is the echo; the others are configurations.
            match (round + turn) % turns {
                0 => {
                    let outcome = workload::echo(echo, connections, load).await;
                    assert_eq!(outcome.errors, 0, "the echo failed calls");
                    eprintln!("round {round}: echo {:.0}/s", outcome.per_second);
                    result.echo.push(outcome.per_second);
                }
                which => {
                    let (name, env) = CONFIGURATIONS[which - 1];
                    let server = ServerProcess::start(binary, scratch, env);
                    let setup = Setup::new(&server, connections, size, None).await;
                    let outcome = setup.run(&GET, load).await;
                    server.stop();
                    assert_eq!(outcome.errors, 0, "{name}: calls failed");
                    eprintln!("round {round}: {name} {:.0}/s", outcome.per_second);
                    result.configurations[which - 1].1.push(outcome.per_second);
                }
            }
        }
    }
    result
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Rounds {
    fn of(&self, name: &str) -> &[f64] {
        if name == "echo" {
            return &self.echo;
        }
        &self
            .configurations
            .iter()
            .find(|(n, _)| n == name)
            .expect("a configuration")
            .1
    }

    /// The median over the rounds of `a`'s throughput over `b`'s in the
    /// same round, and the lowest and highest of those ratios.
    pub fn ratio(&self, a: &str, b: &str) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self
            .of(a)
            .iter()
            .zip(self.of(b))
            .map(|(a, b)| a / b)
            .collect();
        let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios.iter().copied().fold(0.0, f64::max);
        (median(ratios), low, high)
    }

    /// A table for people.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "\ntelemetry: cached GetAllocation over gRPC at {} in flight, {} rounds\n\n| run | median req/s | per round |\n|---|---:|---|\n",
            self.in_flight,
            self.echo.len()
        );
        let rows = std::iter::once(("echo", &self.echo))
            .chain(self.configurations.iter().map(|(n, v)| (n.as_str(), v)));
        for (name, values) in rows {
            let each: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                out,
                "| {name} | {:.0} | {} |",
                median(values.clone()),
                each.join(" / ")
            );
        }
        out.push('\n');
        for (a, b) in [
            ("default", "echo"),
            ("quiet", "echo"),
            ("quiet", "metrics off"),
        ] {
            let (median, low, high) = self.ratio(a, b);
            let _ = writeln!(
                out,
                "{a} / {b}: median of the rounds' ratios {median:.2} ({low:.2}–{high:.2})"
            );
        }
        out
    }
}
