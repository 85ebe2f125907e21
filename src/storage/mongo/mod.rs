//! The MongoDB backend, for production: several stateless replicas of the
//! service share one MongoDB replica set (or sharded cluster).
//!
//! How the rules hold without a single writer: every change to a booking
//! or to the fleet runs in one transaction (snapshot reads, majority
//! writes) that reads the facts, lets the domain decide, and writes the
//! decision with its events. Each such transaction writes the documents it
//! decided from, so two writers that decide from the same facts meet in a
//! write conflict, and the second runs again against the new facts (see
//! [`bookings`], [`fleet`] and [`transaction`]); writers that share no
//! facts do not meet, the event sequences being taken outside the
//! transactions (see [`sequences`]). The unique indexes on bookings stay as
//! a backstop, and name the rule a seeding batch breaks.
//!
//! Every document it sends is built in [`documents`], where each is unit
//! tested; the storage conformance suite runs against a real server when
//! `MONGODB_URL` is set.

mod bookings;
pub mod documents;
mod errors;
mod events;
mod fleet;
mod maintenance;
mod sequences;
mod transaction;

use std::time::Duration;

use mongodb::bson::Document;
use mongodb::error::Error as MongoError;
use mongodb::event::EventHandler;
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, ClientSession, Collection, Cursor, Database, SessionCursor};

use crate::domain::{DomainError, Page};
use crate::storage::{StoreError, StoreResult, error_chain};

use documents as d;
pub use errors::{duplicate_key_message, index_name};

/// How to reach MongoDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoConfig {
    /// A `mongodb://` connection string; may carry credentials, so it is
    /// never logged.
    pub url: String,
    pub database: String,
    pub max_pool_size: u32,
    pub connect_timeout: Duration,
    pub server_selection_timeout: Duration,
}

/// Why the MongoDB store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum MongoOpenError {
    #[error("MONGODB_URL is not usable: {0}")]
    Url(MongoError),
    #[error("cannot create the indexes of {collection} in MongoDB: {source}")]
    Indexes {
        collection: &'static str,
        source: MongoError,
    },
}

/// Whether the indexes (the backstop of the booking rules) exist yet, and when
/// creating them is tried next.
#[derive(Debug)]
struct Indexes {
    ready: std::sync::atomic::AtomicBool,
    /// The next attempt, and the pause after it if it fails.
    retry: std::sync::Mutex<(std::time::Instant, Duration)>,
}

/// Pauses between attempts to create the indexes double up to this.
const MAX_INDEX_RETRY: Duration = Duration::from_secs(60);

impl Indexes {
    fn ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether an attempt is due now; if so, the next one is pushed back.
    fn attempt_due(&self) -> bool {
        let mut retry = self.retry.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if now < retry.0 {
            return false;
        }
        let pause = retry.1;
        *retry = (now + pause, (pause * 2).min(MAX_INDEX_RETRY));
        true
    }
}

/// The MongoDB store.
#[derive(Debug, Clone)]
pub struct MongoStore {
    indexes: std::sync::Arc<Indexes>,
    /// The database on the health checks' own client.
    health: Database,
    client: Client,
    db: Database,
    employees: Collection<Document>,
    drivers: Collection<Document>,
    vehicles: Collection<Document>,
    allocations: Collection<Document>,
    keys: Collection<Document>,
    blocks: Collection<Document>,
    events: Collection<Document>,
    settings: Collection<Document>,
    /// How far the event log can be read without a gap (see [`sequences`]).
    watermark: std::sync::Arc<sequences::Watermark>,
    /// The events' watermark, moved on by the change stream; started by
    /// the first watcher, ended with the last (see [`events`]).
    event_signal: std::sync::Arc<std::sync::Mutex<Option<tokio::sync::watch::Sender<u64>>>>,
}

fn classify(context: &str) -> impl FnOnce(MongoError) -> StoreError + '_ {
    move |error| errors::classify(context, error)
}

fn decoded<T>(result: Result<T, d::Malformed>) -> StoreResult<T> {
    result.map_err(|e| StoreError::internal("decoding a MongoDB document", e))
}

/// All documents of a cursor.
async fn collect(mut cursor: Cursor<Document>, context: &str) -> StoreResult<Vec<Document>> {
    let mut documents = Vec::new();
    while cursor.advance().await.map_err(classify(context))? {
        documents.push(cursor.deserialize_current().map_err(classify(context))?);
    }
    Ok(documents)
}

/// All documents of a cursor in a transaction.
async fn collect_in(
    mut cursor: SessionCursor<Document>,
    session: &mut ClientSession,
) -> Result<Vec<Document>, MongoError> {
    let mut documents = Vec::new();
    while cursor.advance(session).await? {
        documents.push(cursor.deserialize_current()?);
    }
    Ok(documents)
}

/// Counts the pool's checkouts and failed checkouts.
fn record_pool_event(event: CmapEvent) {
    match event {
        CmapEvent::ConnectionCheckedOut(_) => crate::metrics::mongo_checkout(),
        CmapEvent::ConnectionCheckoutFailed(failed) => {
            crate::metrics::mongo_checkout_failed(checkout_failure(&failed.reason));
        }
        _ => {}
    }
}

/// The `reason` label of a failed checkout.
fn checkout_failure(reason: &ConnectionCheckoutFailedReason) -> &'static str {
    match reason {
        ConnectionCheckoutFailedReason::Timeout => "timeout",
        ConnectionCheckoutFailedReason::ConnectionError => "connection_error",
        _ => "other",
    }
}

impl MongoStore {
    /// Connects, and creates the indexes (idempotently). The connection
    /// itself is made lazily and re-made by the driver after failures.
    pub async fn connect(config: &MongoConfig) -> Result<Self, MongoOpenError> {
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(MongoOpenError::Url)?;
        options.app_name = Some("vehicle-allocation".into());
        options.max_pool_size = Some(config.max_pool_size);
        options.connect_timeout = Some(config.connect_timeout);
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.retry_writes = Some(true);
        options.retry_reads = Some(true);
        options.write_concern = Some(WriteConcern::majority());
        let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
        // Health checks get a client of their own, with one connection: a
        // flood of requests holding every pooled connection must not make
        // them time out.
        let mut health_options = options.clone();
        health_options.app_name = Some("vehicle-allocation-health".into());
        health_options.max_pool_size = Some(1);
        health_options.min_pool_size = None;
        let health = Client::with_options(health_options).map_err(MongoOpenError::Url)?;
        // The serving pool's checkouts (not the health client's) as metrics.
        options.cmap_event_handler = Some(EventHandler::callback(record_pool_event));
        let client = Client::with_options(options).map_err(MongoOpenError::Url)?;
        let mut store = Self::new(client, &config.database);
        store.health = health.database(&config.database);
        tracing::info!(hosts = %hosts.join(","), database = %config.database, "using MongoDB");
        // MongoDB down at startup: start anyway. Writes are refused and
        // health says NOT_SERVING until the indexes exist; each health
        // check retries, with growing pauses.
        if let Err(error) = store.ensure_indexes().await {
            tracing::error!(
                error = %error_chain(&error),
                "cannot create the MongoDB indexes; NOT_SERVING until they are, retrying with backoff"
            );
        }
        Ok(store)
    }

    /// Creates the indexes unless they exist, when an attempt is due.
    async fn ensure_indexes(&self) -> StoreResult<()> {
        if self.indexes.ready() {
            return Ok(());
        }
        if !self.indexes.attempt_due() {
            return Err(indexes_missing(std::io::Error::other(
                "waiting to retry creating them",
            )));
        }
        let prepared = match self.create_indexes().await {
            Ok(()) => self.prepare_watermark().await.map_err(indexes_missing),
            Err(error) => Err(indexes_missing(error)),
        };
        match prepared {
            Ok(()) => {
                self.indexes
                    .ready
                    .store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// A session, for a transaction.
    async fn session(&self) -> StoreResult<ClientSession> {
        self.client
            .start_session()
            .await
            .map_err(classify("starting a session"))
    }

    /// Refuses writes while the indexes, the backstop of the booking rules,
    /// may be missing.
    fn writable(&self) -> StoreResult<()> {
        if self.indexes.ready() {
            Ok(())
        } else {
            Err(indexes_missing(std::io::Error::other(
                "MongoDB was unreachable at startup",
            )))
        }
    }

    fn new(client: Client, database: &str) -> Self {
        let db = client.database(database);
        Self {
            health: db.clone(),
            indexes: std::sync::Arc::new(Indexes {
                ready: std::sync::atomic::AtomicBool::new(false),
                retry: std::sync::Mutex::new((std::time::Instant::now(), Duration::from_secs(1))),
            }),
            employees: db.collection(d::EMPLOYEES),
            drivers: db.collection(d::DRIVERS),
            vehicles: db.collection(d::VEHICLES),
            allocations: db.collection(d::ALLOCATIONS),
            keys: db.collection(d::IDEMPOTENCY_KEYS),
            blocks: db.collection(d::VEHICLE_BLOCKS),
            // Watchers read up to the sequence the change stream reported
            // (majority-committed), so their reads must see at least that.
            events: db.collection_with_options(
                d::EVENTS,
                mongodb::options::CollectionOptions::builder()
                    .read_concern(mongodb::options::ReadConcern::majority())
                    .selection_criteria(mongodb::options::SelectionCriteria::ReadPreference(
                        mongodb::options::ReadPreference::Primary,
                    ))
                    .build(),
            ),
            settings: db.collection(d::SETTINGS),
            watermark: Default::default(),
            event_signal: Default::default(),
            client,
            db,
        }
    }

    async fn create_indexes(&self) -> Result<(), MongoOpenError> {
        for (collection, models) in d::indexes() {
            self.db
                .collection::<Document>(collection)
                .create_indexes(models)
                .await
                .map_err(|source| MongoOpenError::Indexes { collection, source })?;
        }
        Ok(())
    }

    /// Drops the whole database (for tests, which use one database each).
    pub async fn drop_database(&self) -> StoreResult<()> {
        self.db
            .drop()
            .await
            .map_err(classify("dropping the database"))
    }

    /// One page of `collection` matching `filter` in `sort` order (up to
    /// `size + 1` documents, the extra one telling whether more follow),
    /// with the total matching `count_filter`, read concurrently.
    #[allow(clippy::too_many_arguments)]
    async fn find_page<T>(
        &self,
        collection: &Collection<Document>,
        filter: Document,
        count_filter: Document,
        sort: Document,
        size: usize,
        decode: fn(&Document) -> Result<T, d::Malformed>,
        context: &str,
    ) -> StoreResult<Page<T>> {
        let rows = async {
            let cursor = collection
                .find(filter)
                .sort(sort)
                .limit(size as i64 + 1)
                .await
                .map_err(classify(context))?;
            collect(cursor, context).await
        };
        let total = self.count(collection, count_filter);
        let (rows, total) = tokio::try_join!(rows, total)?;
        let rows = decoded(rows.iter().map(decode).collect())?;
        Ok(Page::from_rows(rows, size, total))
    }

    async fn count(&self, collection: &Collection<Document>, filter: Document) -> StoreResult<u64> {
        collection
            .count_documents(filter)
            .await
            .map_err(classify("counting"))
    }
}

/// Every transaction's options: snapshot reads and majority writes on the
/// primary, whatever read preference the URL gives other reads.
fn transaction_options() -> mongodb::options::TransactionOptions {
    mongodb::options::TransactionOptions::builder()
        .read_concern(mongodb::options::ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .selection_criteria(mongodb::options::SelectionCriteria::ReadPreference(
            mongodb::options::ReadPreference::Primary,
        ))
        .build()
}

fn indexes_missing(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable("the MongoDB indexes are not created yet", source)
}

/// The refusal or failure that the create transaction's body raised, if
/// that is what ended it.
fn raised_in_transaction(error: &MongoError) -> Option<StoreError> {
    if let Some(rule) = error.get_custom::<DomainError>() {
        return Some(rule.clone().into());
    }
    error.get_custom::<StoreError>().cloned()
}

#[cfg(test)]
mod index_retry_tests {
    use super::*;

    #[test]
    fn index_creation_is_retried_with_doubling_pauses() {
        let start = std::time::Instant::now();
        let indexes = Indexes {
            ready: std::sync::atomic::AtomicBool::new(false),
            retry: std::sync::Mutex::new((start, Duration::from_secs(1))),
        };
        assert!(indexes.attempt_due());
        assert!(!indexes.attempt_due(), "not again within the pause");
        let pauses: Vec<Duration> = (0..8)
            .map(|_| {
                let mut retry = indexes.retry.lock().unwrap();
                retry.0 = start; // as if the pause had passed
                drop(retry);
                assert!(indexes.attempt_due());
                indexes.retry.lock().unwrap().1
            })
            .collect();
        assert_eq!(pauses[0], Duration::from_secs(4));
        assert_eq!(pauses[4], Duration::from_secs(60));
        assert_eq!(pauses[7], MAX_INDEX_RETRY);
    }
}

#[cfg(test)]
mod pool_metric_tests {
    use super::*;
    use mongodb::event::cmap::ConnectionCheckoutFailedEvent;

    #[test]
    fn failed_checkouts_are_labelled_by_their_reason() {
        let failed = |reason: &str| -> ConnectionCheckoutFailedEvent {
            serde_json::from_value(serde_json::json!({ "reason": reason })).unwrap()
        };
        assert_eq!(checkout_failure(&failed("timeout").reason), "timeout");
        assert_eq!(
            checkout_failure(&failed("connectionError").reason),
            "connection_error"
        );
        // Any event passes through the handler without a panic.
        record_pool_event(CmapEvent::from(failed("timeout")));
    }
}
