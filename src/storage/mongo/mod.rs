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
use mongodb::options::{
    Acknowledgment, ClientOptions, ReadConcern, ReadPreference, SelectionCriteria,
    TransactionOptions, WriteConcern,
};
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

/// Why the MongoDB store could not be opened, or is not ready yet.
#[derive(Debug, thiserror::Error)]
pub enum MongoOpenError {
    #[error("MONGODB_URL is not usable: {0}")]
    Url(MongoError),
    #[error("cannot create index {index} of {collection} in MongoDB: {source}")]
    Indexes {
        collection: &'static str,
        index: String,
        source: MongoError,
    },
    /// An index that no retry will create: the data or an older index is
    /// in the way, and someone has to act.
    #[error("cannot create index {index} of {collection} in MongoDB: {advice} ({source})")]
    IndexRefused {
        collection: &'static str,
        index: String,
        advice: String,
        source: MongoError,
    },
    #[error("cannot ask MongoDB what kind of deployment it is: {0}")]
    Hello(MongoError),
    #[error("{0}")]
    Deployment(#[from] DeploymentError),
    #[error("MongoDB did not finish checking the deployment and creating the indexes within {0:?}")]
    TimedOut(Duration),
    #[error("cannot load the events' watermark from MongoDB: {0}")]
    Watermark(StoreError),
}

impl MongoOpenError {
    /// Whether waiting cannot mend it: the service stops at startup
    /// instead of retrying as NOT_SERVING.
    pub fn permanent(&self) -> bool {
        match self {
            Self::Url(_) | Self::IndexRefused { .. } => true,
            Self::Deployment(e) => e.permanent(),
            Self::Indexes { .. } | Self::Hello(_) | Self::TimedOut(_) | Self::Watermark(_) => false,
        }
    }
}

/// A deployment the service cannot run transactions on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeploymentError {
    #[error(
        "MongoDB at MONGODB_URL is a standalone server; transactions need a replica set \
         member or mongos: run mongod with --replSet and rs.initiate() it, or point \
         MONGODB_URL at a replica set or sharded cluster"
    )]
    Standalone,
    #[error("MongoDB at MONGODB_URL is a replica set member whose set is not initiated yet")]
    NotInitiated,
}

impl DeploymentError {
    fn permanent(&self) -> bool {
        matches!(self, Self::Standalone)
    }
}

/// Whether a server whose `hello` reply is `hello` can run transactions:
/// a replica set member (`setName`) or a mongos (`msg: "isdbgrid"`).
fn deployment(hello: &Document) -> Result<(), DeploymentError> {
    if hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid") {
        return Ok(());
    }
    // Started with --replSet but not rs.initiate()d: a moment (or an
    // operator) away from a replica set.
    if hello.get_bool("isreplicaset") == Ok(true) {
        return Err(DeploymentError::NotInitiated);
    }
    Err(DeploymentError::Standalone)
}

/// Codes of index builds that fail the same way every time.
const DUPLICATE_KEY: i32 = 11000;
const CANNOT_CREATE_INDEX: i32 = 67;
const INDEX_OPTIONS_CONFLICT: i32 = 85;
const INDEX_KEY_SPECS_CONFLICT: i32 = 86;

/// Why creating `index` of `collection` failed: refused for good (with
/// what to do about it), or for now.
fn index_failure(collection: &'static str, index: &str, source: MongoError) -> MongoOpenError {
    let code = match source.kind.as_ref() {
        mongodb::error::ErrorKind::Command(e) => Some(e.code),
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(e)) => {
            Some(e.code)
        }
        _ => None,
    };
    let advice = match code {
        Some(DUPLICATE_KEY) => format!(
            "{collection} already holds documents that break this unique index (the error \
             names one); remove the duplicates, then restart the service"
        ),
        Some(INDEX_OPTIONS_CONFLICT | INDEX_KEY_SPECS_CONFLICT) => format!(
            "an index of that name or keys exists with other options; drop index {index} \
             (db.{collection}.dropIndex(\"{index}\")) so that it is created with the new \
             options, then restart the service"
        ),
        Some(CANNOT_CREATE_INDEX) => {
            "MongoDB refuses to create it (see the error); remove the cause, then restart the \
             service"
                .to_owned()
        }
        _ => {
            return MongoOpenError::Indexes {
                collection,
                index: index.to_owned(),
                source,
            };
        }
    };
    MongoOpenError::IndexRefused {
        collection,
        index: index.to_owned(),
        advice,
        source,
    }
}

/// The options of every transaction: snapshot reads and majority writes
/// on the primary, whatever read preference or concerns the URL gives the
/// client (transactions must read from the primary).
pub(super) fn transaction_options() -> TransactionOptions {
    TransactionOptions::builder()
        .read_concern(ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        .build()
}

/// The service's defaults, each set only where the URL did not set the
/// option: an operator's `?maxPoolSize=` or `?w=` wins.
fn fill_defaults(options: &mut ClientOptions, config: &MongoConfig) {
    options
        .app_name
        .get_or_insert_with(|| "vehicle-allocation".into());
    options.max_pool_size.get_or_insert(config.max_pool_size);
    options
        .connect_timeout
        .get_or_insert(config.connect_timeout);
    options
        .server_selection_timeout
        .get_or_insert(config.server_selection_timeout);
    options.retry_writes.get_or_insert(true);
    options.retry_reads.get_or_insert(true);
    // Field by field: `?journal=true` alone keeps majority acknowledgment.
    let write_concern = options.write_concern.get_or_insert_with(Default::default);
    write_concern.w.get_or_insert(Acknowledgment::Majority);
}

/// Whether plain reads may go to a secondary (and so lag behind writes):
/// a URL's `readPreference` other than primary.
fn reads_may_lag(options: &ClientOptions) -> bool {
    !matches!(
        options.selection_criteria,
        None | Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
    )
}

/// How long the deployment check and the index creation may take: a
/// server selection, and a margin for building the indexes of existing
/// data. Past it, the attempt counts as an outage and is retried.
fn preparation_timeout(config: &MongoConfig) -> Duration {
    config.server_selection_timeout + PREPARATION_MARGIN
}

const PREPARATION_MARGIN: Duration = Duration::from_secs(30);

/// Whether the indexes (the backstop of the booking rules) exist yet, and when
/// creating them is tried next.
#[derive(Debug)]
struct Indexes {
    ready: std::sync::atomic::AtomicBool,
    /// The next attempt, and the pause after it if it fails.
    retry: std::sync::Mutex<(std::time::Instant, Duration)>,
    /// Why no attempt will succeed, once one has found out (after a
    /// startup that could not reach MongoDB): no more attempts are made.
    refused: std::sync::OnceLock<String>,
}

/// Pauses between attempts to create the indexes double up to this.
const MAX_INDEX_RETRY: Duration = Duration::from_secs(60);

impl Indexes {
    fn mark_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

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
    /// See [`preparation_timeout`].
    preparation_timeout: Duration,
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
    /// Connects, checks that the deployment can run transactions, and
    /// creates the indexes (idempotently). The connection itself is made
    /// lazily and re-made by the driver after failures. A failure no retry
    /// mends (a standalone server, an index the data or an older index is
    /// in the way of) stops the startup.
    pub async fn connect(config: &MongoConfig) -> Result<Self, MongoOpenError> {
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(MongoOpenError::Url)?;
        fill_defaults(&mut options, config);
        if reads_may_lag(&options) {
            tracing::warn!(
                "MONGODB_URL sets a readPreference other than primary: reads outside \
                 transactions may miss recent writes (transactions still use the primary)"
            );
        }
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
        store.preparation_timeout = preparation_timeout(config);
        tracing::info!(hosts = %hosts.join(","), database = %config.database, "using MongoDB");
        // MongoDB down at startup: start anyway. Writes are refused and
        // health says NOT_SERVING until the indexes exist; each health
        // check retries, with growing pauses.
        // This attempt counts as the first: the next is due after a pause.
        store.indexes.attempt_due();
        match store.prepare().await {
            Ok(()) => store.indexes.mark_ready(),
            Err(error) if error.permanent() => return Err(error),
            Err(error) => tracing::error!(
                error = %error_chain(&error),
                "cannot create the MongoDB indexes; NOT_SERVING until they are, retrying with backoff"
            ),
        }
        Ok(store)
    }

    /// The deployment check and the indexes, within the preparation
    /// timeout.
    async fn prepare(&self) -> Result<(), MongoOpenError> {
        let work = async {
            let hello = self
                .health
                .run_command(mongodb::bson::doc! { "hello": 1 })
                .await
                .map_err(MongoOpenError::Hello)?;
            deployment(&hello)?;
            self.create_indexes().await?;
            self.prepare_watermark()
                .await
                .map_err(MongoOpenError::Watermark)
        };
        tokio::time::timeout(self.preparation_timeout, work)
            .await
            .unwrap_or(Err(MongoOpenError::TimedOut(self.preparation_timeout)))
    }

    /// Creates the indexes unless they exist, when an attempt is due.
    async fn ensure_indexes(&self) -> StoreResult<()> {
        if self.indexes.ready() {
            return Ok(());
        }
        if let Some(refused) = self.indexes.refused.get() {
            return Err(indexes_refused(refused));
        }
        if !self.indexes.attempt_due() {
            return Err(indexes_missing(std::io::Error::other(
                "waiting to retry creating them",
            )));
        }
        match self.prepare().await {
            Ok(()) => {
                self.indexes.mark_ready();
                Ok(())
            }
            Err(error) if error.permanent() => {
                let message = error_chain(&error);
                tracing::error!(error = %message, "MongoDB cannot serve; fix it, then restart");
                let refused = self.indexes.refused.get_or_init(|| message);
                Err(indexes_refused(refused))
            }
            Err(error) => Err(indexes_missing(error)),
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
        } else if let Some(refused) = self.indexes.refused.get() {
            Err(indexes_refused(refused))
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
                refused: std::sync::OnceLock::new(),
            }),
            preparation_timeout: PREPARATION_MARGIN,
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

    /// One index at a time, so that a failure names its index.
    async fn create_indexes(&self) -> Result<(), MongoOpenError> {
        for (collection, models) in d::indexes() {
            let handle = self.db.collection::<Document>(collection);
            for model in models {
                let index = model
                    .options
                    .as_ref()
                    .and_then(|o| o.name.clone())
                    .unwrap_or_default();
                handle
                    .create_index(model)
                    .await
                    .map_err(|source| index_failure(collection, &index, source))?;
            }
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

fn indexes_missing(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable("the MongoDB indexes are not created yet", source)
}

/// No retry will create the indexes: an operator has to act.
fn indexes_refused(why: &str) -> StoreError {
    StoreError::internal(
        "MongoDB cannot serve this service",
        std::io::Error::other(why.to_owned()),
    )
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
            refused: std::sync::OnceLock::new(),
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
mod startup_tests {
    use mongodb::bson::doc;
    use mongodb::error::ErrorKind;

    use super::*;

    fn config() -> MongoConfig {
        MongoConfig {
            url: String::new(),
            database: "d".into(),
            max_pool_size: 50,
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
        }
    }

    async fn parsed(url: &str) -> ClientOptions {
        let mut options = ClientOptions::parse(url).await.unwrap();
        fill_defaults(&mut options, &config());
        options
    }

    fn command(code: i32, name: &str) -> MongoError {
        let error = mongodb::bson::from_document(
            doc! { "code": code, "codeName": name, "errmsg": "Index build failed" },
        )
        .unwrap();
        MongoError::from(ErrorKind::Command(error))
    }

    #[test]
    fn a_replica_set_member_or_a_mongos_can_run_transactions() {
        let member = doc! { "isWritablePrimary": true, "setName": "rs0", "hosts": ["a:27017"] };
        assert_eq!(deployment(&member), Ok(()));
        let secondary = doc! { "isWritablePrimary": false, "secondary": true, "setName": "rs0" };
        assert_eq!(deployment(&secondary), Ok(()));
        let mongos = doc! { "isWritablePrimary": true, "msg": "isdbgrid" };
        assert_eq!(deployment(&mongos), Ok(()));
    }

    #[test]
    fn a_standalone_is_refused_for_good_and_an_uninitiated_set_for_now() {
        let standalone = doc! { "isWritablePrimary": true, "maxWireVersion": 21 };
        let refused = MongoOpenError::from(deployment(&standalone).unwrap_err());
        assert!(refused.permanent());
        assert!(refused.to_string().contains("standalone"), "{refused}");
        let waiting = doc! { "isWritablePrimary": false, "isreplicaset": true };
        let error = MongoOpenError::from(deployment(&waiting).unwrap_err());
        assert!(!error.permanent(), "{error}");
        // Something else than "isdbgrid" is no mongos.
        assert!(deployment(&doc! { "msg": "other" }).is_err());
    }

    #[test]
    fn index_errors_that_cannot_heal_stop_the_startup_with_what_to_do() {
        let duplicates = index_failure(
            d::ALLOCATIONS,
            "vehicle_date_unique",
            command(11000, "DuplicateKey"),
        );
        assert!(duplicates.permanent());
        let message = duplicates.to_string();
        assert!(message.contains("vehicle_date_unique"), "{message}");
        assert!(message.contains(d::ALLOCATIONS), "{message}");
        assert!(message.contains("remove the duplicates"), "{message}");
        for (code, name) in [(85, "IndexOptionsConflict"), (86, "IndexKeySpecsConflict")] {
            let conflict = index_failure(
                d::IDEMPOTENCY_KEYS,
                "expire_after_window",
                command(code, name),
            );
            assert!(conflict.permanent(), "{name}");
            let message = conflict.to_string();
            assert!(
                message.contains("dropIndex(\"expire_after_window\")"),
                "{message}"
            );
        }
        let refused = index_failure(
            d::EMPLOYEES,
            "email_unique",
            command(67, "CannotCreateIndex"),
        );
        assert!(refused.permanent());
    }

    #[test]
    fn outages_while_creating_indexes_are_retried() {
        let reset = MongoError::from(ErrorKind::Io(std::sync::Arc::new(std::io::Error::other(
            "reset",
        ))));
        assert!(!index_failure(d::EMPLOYEES, "email_unique", reset).permanent());
        let stepped_down = command(189, "PrimarySteppedDown");
        assert!(!index_failure(d::EMPLOYEES, "email_unique", stepped_down).permanent());
        assert!(!MongoOpenError::TimedOut(Duration::from_secs(35)).permanent());
        assert_eq!(preparation_timeout(&config()), Duration::from_secs(35));
    }

    #[test]
    fn transactions_read_snapshots_from_the_primary_and_write_to_a_majority() {
        let options = transaction_options();
        assert_eq!(options.read_concern, Some(ReadConcern::snapshot()));
        assert_eq!(options.write_concern, Some(WriteConcern::majority()));
        assert!(matches!(
            options.selection_criteria,
            Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        ));
    }

    #[tokio::test]
    async fn without_options_in_the_url_the_service_s_defaults_apply() {
        let options = parsed("mongodb://localhost:27017/?replicaSet=rs0").await;
        assert_eq!(options.app_name.as_deref(), Some("vehicle-allocation"));
        assert_eq!(options.max_pool_size, Some(50));
        assert_eq!(options.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(
            options.server_selection_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(options.retry_writes, Some(true));
        assert_eq!(options.retry_reads, Some(true));
        assert_eq!(options.write_concern, Some(WriteConcern::majority()));
        assert!(!reads_may_lag(&options));
    }

    #[tokio::test]
    async fn options_in_the_url_win_over_the_defaults() {
        let options = parsed(
            "mongodb://a:27017,b:27017/?replicaSet=rs0&appName=ops&maxPoolSize=7\
             &connectTimeoutMS=1500&serverSelectionTimeoutMS=2500&retryWrites=false\
             &retryReads=false&w=1&readPreference=secondaryPreferred",
        )
        .await;
        assert_eq!(options.app_name.as_deref(), Some("ops"));
        assert_eq!(options.max_pool_size, Some(7));
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            options.server_selection_timeout,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(options.retry_writes, Some(false));
        assert_eq!(options.retry_reads, Some(false));
        let w = options.write_concern.as_ref().and_then(|wc| wc.w.clone());
        assert_eq!(w, Some(Acknowledgment::Nodes(1)));
        assert!(reads_may_lag(&options));
        // A journal setting alone keeps the majority default beside it.
        let options = parsed("mongodb://localhost:27017/?journal=true").await;
        let write_concern = options.write_concern.unwrap();
        assert_eq!(write_concern.w, Some(Acknowledgment::Majority));
        assert_eq!(write_concern.journal, Some(true));
        let primary = parsed("mongodb://localhost:27017/?readPreference=primary").await;
        assert!(!reads_may_lag(&primary));
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
