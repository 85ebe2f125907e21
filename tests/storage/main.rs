//! The storage conformance suite: every backend runs the very same cases
//! (`cases.rs`) through the `Store` trait.
//!
//! The embedded store always runs. MongoDB runs when `MONGODB_URL` names a
//! replica set (each case in a database of its own, dropped afterwards);
//! otherwise one loud SKIPPED line says so.

mod cache;
mod cases;
mod event_cases;
mod fixture;
mod fleet_cases;
#[path = "../support/instrumented_store.rs"]
mod instrumented_store;
#[path = "../support/redis.rs"]
mod redis_support;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vehicle_allocation::storage::Store;
use vehicle_allocation::storage::mongo::{MongoConfig, MongoStore};
use vehicle_allocation::storage::sqlite::SqliteStore;

/// A store under test, what keeps it alive (a temporary directory) and what
/// cleans up after it (a database to drop).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Send + Sync>,
    pub cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// A fresh embedded store in a temporary directory.
pub async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open the embedded store");
    Some(TestStore {
        store: Arc::new(store),
        _guard: Box::new(dir),
        cleanup: None,
    })
}

/// A fresh MongoDB database, when `MONGODB_URL` is set.
pub async fn mongo() -> Option<TestStore> {
    let Some(url) = std::env::var("MONGODB_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // Straight to stderr: the test harness would swallow eprintln! of a
        // passing test, and this line must be seen.
        ONCE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: MongoDB conformance (MONGODB_URL not set)\n"
            );
        });
        return None;
    };
    static CASE: AtomicUsize = AtomicUsize::new(0);
    let database = format!(
        "va_conformance_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        CASE.fetch_add(1, Ordering::SeqCst)
    );
    let config = MongoConfig {
        url,
        database,
        max_pool_size: 10,
        connect_timeout: Duration::from_secs(5),
        server_selection_timeout: Duration::from_secs(10),
    };
    let store = MongoStore::connect(&config)
        .await
        .expect("connect to MONGODB_URL");
    let dropper = store.clone();
    Some(TestStore {
        store: Arc::new(store),
        _guard: Box::new(()),
        cleanup: Some(Box::pin(async move {
            dropper
                .drop_database()
                .await
                .expect("drop the test database");
        })),
    })
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh
/// store from `$open`, which may return `None` to skip.
macro_rules! conformance_suite {
    ($backend:ident, $open:path) => {
        mod $backend {
            crate::cases::for_each_case!(conformance_tests, $open);
        }
    };
}

macro_rules! conformance_tests {
    ($open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(mut test_store) = $open().await else { return };
                let store = std::sync::Arc::clone(&test_store.store);
                // The case runs in a task of its own so that a failing case
                // still cleans up before its panic is passed on.
                let outcome = tokio::spawn(async move {
                    let fixture = crate::fixture::Fixture::load(store.as_ref()).await;
                    crate::cases::$case(&store, &fixture).await;
                })
                .await;
                if let Some(cleanup) = test_store.cleanup.take() {
                    cleanup.await;
                }
                if let Err(failure) = outcome {
                    std::panic::resume_unwind(failure.into_panic());
                }
            }
        )*
    };
}

pub(crate) use conformance_tests;

conformance_suite!(sqlite_store, crate::sqlite);
conformance_suite!(mongo_store, crate::mongo);
