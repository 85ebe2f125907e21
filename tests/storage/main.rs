//! The storage conformance suite: every backend runs the very same cases
//! (`cases.rs`) through the `Store` trait.

mod cases;
mod fixture;

use std::sync::Arc;

use vehicle_allocation::storage::Store;
use vehicle_allocation::storage::sqlite::SqliteStore;

/// A store under test and what keeps it alive (a temporary directory, a
/// database to drop).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Send + Sync>,
}

/// A fresh embedded store in a temporary directory.
pub async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open the embedded store");
    Some(TestStore {
        store: Arc::new(store),
        _guard: Box::new(dir),
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
                let Some(test_store) = $open().await else { return };
                let fixture = crate::fixture::Fixture::load(test_store.store.as_ref()).await;
                crate::cases::$case(&test_store.store, &fixture).await;
            }
        )*
    };
}

pub(crate) use conformance_tests;

conformance_suite!(sqlite_store, crate::sqlite);
