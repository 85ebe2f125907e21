//! The MongoDB backend, for production: several stateless replicas of the
//! service share one MongoDB replica set (or sharded cluster).
//!
//! How the rules hold without a single writer: every change to a booking
//! or to the fleet runs in one transaction (snapshot reads, majority
//! writes) that reads the facts, lets the domain decide, and writes the
//! decision with its events. Each such transaction writes the documents it
//! decided from and the event sequence counter, so two concurrent writers
//! meet in a write conflict, which the driver retries against the new facts
//! (see [`booking`] and [`fleet`]). The unique indexes on bookings stay as a
//! backstop, and name the rule a seeding batch breaks.
//!
//! Every document it sends is built in [`documents`], where each is unit
//! tested; the storage conformance suite runs against a real server when
//! `MONGODB_URL` is set.

mod booking;
pub mod documents;
mod errors;
mod events;
mod fleet;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use mongodb::bson::{Document, doc};
use mongodb::error::Error as MongoError;
use mongodb::event::EventHandler;
use mongodb::event::cmap::{CmapEvent, ConnectionCheckoutFailedReason};
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, ClientSession, Collection, Cursor, Database, SessionCursor};

use crate::domain::allocation::allocation_not_found;
use crate::domain::booking::BookingCommand;
use crate::domain::event::{seeded_bookings, seeded_fleet};
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, DomainError, Driver, Employee, Event,
    EventFilter, FleetOutcome, FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Origin,
    Page, PageKey, PageRequest, Resource, UpdatedAllocation, Vehicle, VehicleBlock,
};
use crate::storage::{
    Decided as _, FleetPass, FleetSession, Store, StoreError, StoreResult, error_chain,
};

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

/// Whether the indexes (which are the booking rules) exist yet, and when
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
    /// The newest event's sequence, from the change stream; started by the
    /// first watcher, ended with the last (see [`events`]).
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
        match self.create_indexes().await {
            Ok(()) => {
                self.indexes
                    .ready
                    .store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Err(error) => Err(indexes_missing(error)),
        }
    }

    /// Refuses writes while the indexes, which enforce the booking rules,
    /// may be missing.
    /// A session, for a transaction.
    async fn session(&self) -> StoreResult<ClientSession> {
        self.client
            .start_session()
            .await
            .map_err(classify("starting a session"))
    }

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

    async fn find_allocation(&self, id: &str) -> StoreResult<Option<Allocation>> {
        let found = self
            .allocations
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading an allocation"))?;
        match found {
            Some(document) => decoded(d::allocation_from(&document)).map(Some),
            None => Ok(None),
        }
    }

    /// Turns a duplicate-key error on `wanted` into the rule it stands for,
    /// naming the booking in the way: one of `batch` written with it, or one
    /// already stored (the lookup runs after the failed write was rolled
    /// back, so the holder may be gone by then; the rule fired all the same).
    async fn conflict(
        &self,
        error: MongoError,
        wanted: &Allocation,
        batch: &[Allocation],
    ) -> StoreError {
        let Some(index) = duplicate_key_message(&error)
            .and_then(index_name)
            .map(str::to_owned)
        else {
            return errors::classify("writing an allocation", error);
        };
        // A driver drives one vehicle a day, so their index fires for a
        // vehicle booked twice as well (and `wanted` may not know its
        // driver yet): the vehicle's slot is the one taken.
        let index = if index == d::DRIVER_DATE_UNIQUE {
            d::VEHICLE_DATE_UNIQUE.to_owned()
        } else {
            index
        };
        let Some(filter) = d::slot_holder(&index, wanted) else {
            return errors::classify("writing an allocation", error);
        };
        let allocation_id = match batch
            .iter()
            .find(|other| d::same_slot(&index, wanted, other))
        {
            Some(other) => other.id.clone(),
            None => match self.allocations.find_one(filter).await {
                Ok(Some(holder)) => match d::id_of(d::ALLOCATIONS, &holder) {
                    Ok(id) => id,
                    Err(malformed) => {
                        return StoreError::internal("reading the slot holder", malformed);
                    }
                },
                Ok(None) => String::new(),
                Err(error) => return errors::classify("finding the slot holder", error),
            },
        };
        let rule = if index == d::VEHICLE_DATE_UNIQUE {
            DomainError::VehicleAlreadyBooked {
                vehicle_id: wanted.vehicle_id.clone(),
                date: wanted.date,
                allocation_id,
            }
        } else {
            DomainError::EmployeeAlreadyBooked {
                employee_id: wanted.employee_id.clone(),
                date: wanted.date,
                allocation_id,
            }
        };
        rule.into()
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

    async fn vehicles_page(
        &self,
        pipeline: Vec<Document>,
        size: usize,
        total: u64,
    ) -> StoreResult<Page<Vehicle>> {
        let cursor = self
            .vehicles
            .aggregate(pipeline)
            .await
            .map_err(classify("listing vehicles"))?;
        let rows = collect(cursor, "listing vehicles")
            .await?
            .iter()
            .map(d::vehicle_from)
            .collect::<Result<Vec<_>, _>>();
        Ok(Page::from_rows(decoded(rows)?, size, total))
    }
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

#[async_trait]
impl Store for MongoStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        self.write_booking(BookingCommand::Create(new))
            .await?
            .created()
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        self.find_allocation(id)
            .await?
            .ok_or_else(|| allocation_not_found(id).into())
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        self.write_booking(BookingCommand::Update(update))
            .await?
            .updated()
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        self.write_booking(BookingCommand::Cancel(deletion))
            .await?
            .cancelled()
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        self.find_page(
            &self.allocations,
            d::history_filter(filter, page.after.as_ref()),
            d::history_filter(filter, None),
            d::history_sort(),
            page.size,
            d::allocation_from,
            "listing history",
        )
        .await
    }

    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        let found = self
            .employees
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading an employee"))?
            .ok_or_else(|| DomainError::not_found(Resource::Employee, id))?;
        decoded(d::employee_from(&found))
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        self.find_page(
            &self.employees,
            d::employees_filter(department, show_deactivated, page.after.as_deref()),
            d::employees_filter(department, show_deactivated, None),
            d::id_sort(),
            page.size,
            d::employee_from,
            "listing employees",
        )
        .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        let found = self
            .drivers
            .find_one(d::by_id(id))
            .await
            .map_err(classify("reading a driver"))?
            .ok_or_else(|| DomainError::not_found(Resource::Driver, id))?;
        decoded(d::driver_from(&found))
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.find_page(
            &self.drivers,
            d::drivers_filter(show_deactivated, page.after.as_deref()),
            d::drivers_filter(show_deactivated, None),
            d::id_sort(),
            page.size,
            d::driver_from,
            "listing drivers",
        )
        .await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        let page = self
            .vehicles_page(d::vehicles_pipeline(d::by_id(id), on, 1), 1, 1)
            .await?;
        page.items
            .into_iter()
            .next()
            .ok_or_else(|| DomainError::not_found(Resource::Vehicle, id).into())
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        let total = self
            .count(&self.vehicles, d::vehicles_filter(show_retired, None))
            .await?;
        let pipeline = d::vehicles_pipeline(
            d::vehicles_filter(show_retired, page.after.as_deref()),
            on,
            page.size as i64 + 1,
        );
        self.vehicles_page(pipeline, page.size, total).await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        let total = async {
            let cursor = self
                .vehicles
                .aggregate(d::available_count_pipeline(date))
                .await
                .map_err(classify("counting available vehicles"))?;
            let counted = collect(cursor, "counting available vehicles").await?;
            Ok::<_, StoreError>(match counted.first() {
                Some(doc) => decoded(d::count_from(doc))?,
                None => 0,
            })
        };
        let pipeline =
            d::available_vehicles_pipeline(date, page.after.as_deref(), page.size as i64 + 1);
        let (total, page) = tokio::try_join!(total, self.vehicles_page(pipeline, page.size, 0))?;
        Ok(Page {
            total_size: total,
            ..page
        })
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        let vehicle = self
            .vehicles
            .find_one(d::by_id(vehicle_id))
            .await
            .map_err(classify("reading a vehicle"))?;
        if vehicle.is_none() {
            return Err(DomainError::not_found(Resource::Vehicle, vehicle_id).into());
        }
        self.find_page(
            &self.blocks,
            d::blocks_filter(vehicle_id, page.after.as_deref()),
            d::blocks_filter(vehicle_id, None),
            d::id_sort(),
            page.size,
            d::block_from,
            "listing blocks",
        )
        .await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        self.apply_fleet_batch(requests).await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        self.open_fleet_session(pass).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.ensure_indexes().await?;
        self.health
            .run_command(doc! { "ping": 1 })
            .await
            .map(drop)
            .map_err(classify("pinging MongoDB"))
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        let cursor = self
            .events
            .find(d::event_filter(filter, page.after))
            .sort(d::sequence_sort())
            .limit(page.size as i64 + 1)
            .await
            .map_err(classify("listing events"))?;
        let rows = collect(cursor, "listing events").await?;
        let rows = decoded(rows.iter().map(d::event_from).collect())?;
        Ok(Page::from_rows(rows, page.size, 0))
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.subscribe_events()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        // The counter every write transaction takes its sequences from: it
        // holds every replica's committed events, and no aborted ones.
        let counter = self
            .settings
            .find_one(d::by_id(d::EVENT_SEQUENCE))
            .await
            .map_err(classify("reading the event sequence counter"))?;
        match counter {
            Some(counter) => decoded(d::sequence_from(&counter)),
            None => Ok(0),
        }
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.prune_events_before(before, limit).await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        let settings = &self.settings;
        let filter = d::by_id(d::PAGE_TOKEN_KEY);
        let upsert = settings
            .update_one(filter.clone(), d::page_key_upsert(candidate.bytes()))
            .upsert(true)
            .write_concern(WriteConcern::majority())
            .await;
        // Two replicas upserting at once: one inserts, the other may fail
        // on the duplicate _id; both then read the one that was stored.
        if let Err(error) = upsert
            && errors::duplicate_key_message(&error).is_none()
        {
            return Err(classify("storing the page-token key")(error));
        }
        let stored = settings
            .find_one(filter)
            .await
            .map_err(classify("reading the page-token key"))?
            .ok_or_else(|| {
                StoreError::internal(
                    "reading the page-token key",
                    std::io::Error::other("the key vanished after it was stored"),
                )
            })?;
        let bytes = decoded(d::page_key_from(&stored))?;
        PageKey::from_stored(&bytes).ok_or_else(|| {
            StoreError::internal(
                "reading the page-token key",
                std::io::Error::other(format!("the stored key is {} bytes, not 32", bytes.len())),
            )
        })
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        for collection in [&self.employees, &self.vehicles, &self.allocations] {
            let any = collection
                .find_one(Document::new())
                .await
                .map_err(classify("checking for data"))?;
            if any.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Drops the collections and recreates their indexes: a transaction
    /// could not hold the deletion of a million documents.
    async fn reset(&self) -> StoreResult<()> {
        // No writes between the drop and the new indexes: the indexes are
        // the booking rules.
        self.indexes
            .ready
            .store(false, std::sync::atomic::Ordering::Release);
        // The event sequence counter (in settings) stays: sequences never
        // go back, so watchers' resume tokens stay valid.
        for collection in [
            &self.events,
            &self.keys,
            &self.blocks,
            &self.allocations,
            &self.vehicles,
            &self.drivers,
            &self.employees,
        ] {
            collection
                .drop()
                .await
                .map_err(classify("dropping a collection"))?;
        }
        self.create_indexes()
            .await
            .map_err(|e| StoreError::unavailable("recreating indexes", e))?;
        self.indexes
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// One transaction, so that a failure leaves no partial fleet behind.
    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.writable()?;
        let batches: Vec<(Collection<Document>, Vec<Document>)> = vec![
            (
                self.employees.clone(),
                employees.iter().map(d::employee_document).collect(),
            ),
            (
                self.drivers.clone(),
                vehicles
                    .iter()
                    .filter_map(|v| v.driver.as_ref().map(d::driver_document))
                    .collect(),
            ),
            (
                self.vehicles.clone(),
                vehicles
                    .iter()
                    .map(|v| {
                        let since_ever = v.driver.iter().map(|driver| crate::domain::Assignment {
                            driver_id: driver.id.clone(),
                            start: crate::domain::fleet::timeline_start(),
                            end: None,
                        });
                        d::vehicle_document(v, &since_ever.collect::<Vec<_>>())
                    })
                    .collect(),
            ),
        ];
        let events = seeded_fleet(&employees, &vehicles, &Origin::system("seed"));
        let mut session = self.session().await?;
        session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .and_run(
                (self.clone(), batches, events),
                |session, (store, batches, events)| {
                    Box::pin(async move {
                        for (collection, documents) in batches.iter() {
                            if !documents.is_empty() {
                                collection
                                    .insert_many(documents.iter())
                                    .session(&mut *session)
                                    .await?;
                            }
                        }
                        store.append_events(session, events).await
                    })
                },
            )
            .await
            .map_err(|error| {
                raised_in_transaction(&error)
                    .unwrap_or_else(|| errors::classify("inserting the fleet", error))
            })
    }

    /// One `insert_many` in a transaction: a batch that breaks a rule is
    /// refused whole. Ordered, because inside a transaction the server stops
    /// at the first error anyway, and an unordered insert of several batches
    /// would go on sending into the aborted transaction (and be retried as
    /// transient until the driver gives up).
    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.writable()?;
        if allocations.is_empty() {
            return Ok(());
        }
        let documents: Vec<Document> = allocations.iter().map(d::allocation_document).collect();
        let events = seeded_bookings(&allocations, &Origin::system("seed"));
        let mut session = self.session().await?;
        let result = session
            .start_transaction()
            .write_concern(WriteConcern::majority())
            .and_run(
                (self.clone(), documents, events),
                |session, (store, documents, events)| {
                    Box::pin(async move {
                        store
                            .allocations
                            .insert_many(documents.iter())
                            .session(&mut *session)
                            .await?;
                        store.append_events(session, events).await
                    })
                },
            )
            .await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if let Some(raised) = raised_in_transaction(&error) {
            return Err(raised);
        }
        match errors::duplicate_key_position(&error) {
            Some(position) if position < allocations.len() => Err(self
                .conflict(error, &allocations[position], &allocations[..position])
                .await),
            _ => Err(errors::classify("inserting allocations", error)),
        }
    }
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
