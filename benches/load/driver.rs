//! Drives a call at a fixed number of requests in flight for a while, and
//! measures throughput and latency.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Requests in flight at any time.
    pub in_flight: usize,
    /// Not measured: lets connections, caches and the allocator settle.
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

/// Runs `call(worker, sequence)` from `load.in_flight` workers, each
/// starting its next call when the last one answers. `call` says whether
/// the answer was a success.
pub async fn drive<F, Fut>(load: Load, call: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let measure_from = started + load.warmup;
    let stop_at = measure_from + load.duration;
    let workers: Vec<_> = (0..load.in_flight)
        .map(|worker| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut errors = 0u64;
                let mut sequence = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= stop_at {
                        break;
                    }
                    let ok = call(worker, sequence).await;
                    sequence += 1;
                    if sent >= measure_from {
                        latencies.push(sent.elapsed().as_micros() as u32);
                        if !ok {
                            errors += 1;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut mine, failed) = worker.await.expect("worker");
        latencies.append(&mut mine);
        errors += failed;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[index]) / 1000.0
    };
    Outcome {
        requests: latencies.len() as u64,
        errors,
        per_second: latencies.len() as f64 / load.duration.as_secs_f64(),
        mean_ms: latencies.iter().map(|&us| f64::from(us)).sum::<f64>()
            / latencies.len().max(1) as f64
            / 1000.0,
        p50_ms: percentile(0.50),
        p90_ms: percentile(0.90),
        p99_ms: percentile(0.99),
    }
}
