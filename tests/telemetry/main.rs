//! Metrics (and traces) as an operator's tools read them. A binary of its
//! own: the metrics recorder is one per process, so no other test's calls
//! may move the counters these tests count; the tests here take turns.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../support/identity.rs"]
mod identity;
#[allow(dead_code)]
#[path = "../support/instrumented_store.rs"]
mod instrumented_store;

mod metrics;

/// One test at a time: they all read the same process-wide counters.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
