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
mod property_cases;
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

/// A store under test, what keeps it alive (a temporary directory), what
/// cleans up after it (a database to drop), and what reads it from under
/// the `Store` trait.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _guard: Box<dyn Send + Sync>,
    pub cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    pub raw: RawText,
}

/// Every text value a store holds, with the table or collection it is in,
/// read straight from the database: for the cases that must show something
/// is stored nowhere.
pub type RawText =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<(String, String)>> + Send>> + Send + Sync>;

tokio::task_local! {
    static RAW: RawText;
}

/// What [`RawText`] reads for the store of the case running.
pub async fn stored_text() -> Vec<(String, String)> {
    RAW.with(Arc::clone)().await
}

/// Every text and blob value of every table of the SQLite file at `path`,
/// through a connection of its own.
fn sqlite_text(path: &std::path::Path) -> Vec<(String, String)> {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database file");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let mut select = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = select.column_count();
        let mut rows = select.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let text = match row.get_ref(i).unwrap() {
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => continue,
                };
                found.push((table.clone(), text));
            }
        }
    }
    found
}

/// Every document of every collection of `database`, as extended JSON.
async fn mongo_text(url: String, database: String) -> Vec<(String, String)> {
    let client = mongodb::Client::with_uri_str(&url).await.expect("connect");
    let db = client.database(&database);
    let mut found = Vec::new();
    for collection in db.list_collection_names().await.expect("list collections") {
        let mut cursor = db
            .collection::<mongodb::bson::Document>(&collection)
            .find(mongodb::bson::doc! {})
            .await
            .expect("read a collection");
        while cursor.advance().await.expect("read a document") {
            let document = cursor.deserialize_current().expect("a document");
            let json = mongodb::bson::Bson::Document(document)
                .into_relaxed_extjson()
                .to_string();
            found.push((collection.clone(), json));
        }
    }
    found
}

/// A fresh embedded store in a temporary directory.
pub async fn sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path()).expect("open the embedded store");
    let path = dir
        .path()
        .join(vehicle_allocation::storage::sqlite::DATABASE_FILE);
    Some(TestStore {
        store: Arc::new(store),
        _guard: Box::new(dir),
        cleanup: None,
        raw: Arc::new(move || {
            let path = path.clone();
            Box::pin(async move { sqlite_text(&path) })
        }),
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
    let raw: RawText = {
        let (url, database) = (url.clone(), database.clone());
        Arc::new(move || Box::pin(mongo_text(url.clone(), database.clone())))
    };
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
        raw,
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
                let raw = std::sync::Arc::clone(&test_store.raw);
                // The case runs in a task of its own so that a failing case
                // still cleans up before its panic is passed on.
                let outcome = tokio::spawn(crate::RAW.scope(raw, async move {
                    let fixture = crate::fixture::Fixture::load(store.as_ref()).await;
                    crate::cases::$case(&store, &fixture).await;
                }))
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
