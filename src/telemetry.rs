//! Logging: `tracing` events to stderr, as text or JSON lines, filtered by
//! `RUST_LOG` (default `info`).
//!
//! Lines are written by a background thread (`tracing-appender`): a request
//! only formats its line into a queue and never waits for stderr. The thread
//! writes whatever has queued up through a buffer, flushed each time the
//! queue is empty: one system call for a burst of lines rather than one per
//! line, and no line waits once the queue is drained. When the queue is
//! full (stderr blocked, e.g. a stalled collector) lines are dropped rather
//! than slowing requests down.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The most one write to stderr carries.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Lines the queue holds before new ones are dropped.
const QUEUED_LINES: usize = 128 * 1024;

/// Installs the global subscriber. Call once, at startup, and keep the
/// guard until the process ends: dropping it writes out the queued lines.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            WRITE_BUFFER_BYTES,
            std::io::stderr(),
        ));
    // Colours only for a person at a terminal, not in files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    guard
}
