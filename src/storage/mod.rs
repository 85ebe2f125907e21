//! Persistence: the store's traits by concern, the steps of every write,
//! one module per backend, and the decorators (cache, meters).
//!
//! The rules live in [`crate::domain`]. A backend reads the facts a
//! command is decided from *inside* its write transaction, lets the domain
//! decide, and writes what was decided with its event ([`steps`]), so that
//! no concurrent writer can change the facts in between. Unique indexes
//! stay as a backstop. Where a backend restates a rule in its query
//! language for speed (the bookable vehicles of a day), the conformance
//! suite (`tests/storage`) holds its answers to the domain's definition.
//!
//! Each backend has the same layout: `bookings`, `fleet`, `events`,
//! `maintenance` (each with its trait's impl), `transaction` (the steps'
//! reads and writes), `errors`, and its encoding (`rows` for SQLite,
//! `documents` for MongoDB).

pub mod cached;
mod layered;
pub mod metered;
pub mod mongo;
pub mod sqlite;
mod steps;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

pub use layered::Layered;

/// The store's traits, for calling their methods on a concrete store
/// (`dyn Store` has them all already).
pub mod prelude {
    pub use super::{BookingStore as _, EventLog as _, FleetStore as _, Maintenance as _};
}

use crate::domain::booking::BookingDecision;
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, DomainError, Driver, Employee, Event,
    EventFilter, FleetOutcome, FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Page,
    PageKey, PageRequest, UpdatedAllocation, Vehicle, VehicleBlock,
};

/// The source of a storage failure, shareable so that one failed group commit
/// can be reported to every request in the group.
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync>;

/// What a storage call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The request breaks a rule; the client can act on it.
    #[error(transparent)]
    Rejected(#[from] DomainError),

    /// The store cannot be reached or is overloaded; retrying later may work.
    #[error("storage unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: ErrorSource,
    },

    /// The store answered in a way that should never happen.
    #[error("storage failure: {context}")]
    Internal {
        context: String,
        #[source]
        source: ErrorSource,
    },
}

impl StoreError {
    /// An unavailable store, with what was being done.
    pub fn unavailable(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// An internal failure, with what was being done.
    pub fn internal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

/// The most bytes of an error's text that are logged or kept: a driver's
/// message may repeat what it was given (a value, a statement) at any
/// length, and a caller can make that long.
pub const ERROR_TEXT_BYTES: usize = 1024;

/// `error` and its sources, outermost first, for logs: cut to
/// [`ERROR_TEXT_BYTES`].
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        if text.len() > ERROR_TEXT_BYTES {
            break;
        }
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::domain::error::clip_bytes(&text, ERROR_TEXT_BYTES).into_owned()
}

/// Which backend to use, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded SQLite store in this directory (the default).
    Embedded { data_dir: std::path::PathBuf },
    /// A MongoDB deployment (when `MONGODB_URL` is set).
    Mongo(mongo::MongoConfig),
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Embedded(#[from] sqlite::OpenError),
    #[error(transparent)]
    Mongo(#[from] mongo::MongoOpenError),
}

/// Opens the configured store for loading much data at once (seeding).
pub async fn open_for_loading(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    match config {
        StoreConfig::Embedded { data_dir } => Ok(metered(
            Arc::new(sqlite::SqliteStore::open_for_loading(data_dir)?),
            SQLITE,
        )),
        StoreConfig::Mongo(_) => open(config).await,
    }
}

/// Opens the configured store for serving: the embedded one after SQLite's
/// integrity check, unless `integrity_check` is off.
pub async fn open_checked(
    config: &StoreConfig,
    integrity_check: bool,
) -> Result<Arc<dyn Store>, OpenError> {
    match config {
        StoreConfig::Embedded { data_dir } if integrity_check => Ok(metered(
            Arc::new(sqlite::SqliteStore::open_checked(data_dir)?),
            SQLITE,
        )),
        StoreConfig::Embedded { .. } => open(config).await,
        StoreConfig::Mongo(_) => open(config).await,
    }
}

/// Opens the configured store.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match config {
        StoreConfig::Embedded { data_dir } => {
            metered(Arc::new(sqlite::SqliteStore::open(data_dir)?), SQLITE)
        }
        StoreConfig::Mongo(mongo) => {
            metered(Arc::new(mongo::MongoStore::connect(mongo).await?), MONGODB)
        }
    })
}

/// The `backend` label of each store.
pub const SQLITE: &str = "sqlite";
pub const MONGODB: &str = "mongodb";

/// `store` with its operations timed under `backend` (see [`metered`]).
pub fn metered(store: Arc<dyn Store>, backend: &'static str) -> Arc<dyn Store> {
    Arc::new(metered::MeteredStore::new(store, backend))
}

/// A store, and the cache in front of it when there is one.
pub struct CachedSetup {
    /// What to serve from: the cache in front of the store, or the store.
    pub store: Arc<dyn Store>,
    /// The cache layer, for its statistics.
    pub cache: Option<Arc<cached::CachedStore>>,
}

/// `store` behind the configured cache, unless caching is off.
pub fn with_cache(
    store: Arc<dyn Store>,
    config: &crate::cache::CacheConfig,
) -> Result<CachedSetup, crate::cache::CacheError> {
    Ok(match crate::cache::open(config)? {
        None => CachedSetup { store, cache: None },
        Some(backend) => {
            let cached = Arc::new(cached::CachedStore::new(Arc::clone(&store), backend));
            // Events are read from the store: a log read in order gains
            // nothing from a cache.
            let layered = Layered {
                bookings: cached.clone(),
                fleet: cached.clone(),
                maintenance: cached.clone(),
                ..Layered::of(store)
            };
            CachedSetup {
                store: Arc::new(layered),
                cache: Some(cached),
            }
        }
    })
}

/// What a decided booking command answers, for each kind of command.
pub(crate) trait Decided {
    fn created(self) -> StoreResult<Allocation>;
    fn updated(self) -> StoreResult<UpdatedAllocation>;
    fn cancelled(self) -> StoreResult<Allocation>;
}

impl Decided for BookingDecision {
    fn created(self) -> StoreResult<Allocation> {
        match self {
            Self::Replay(made) => Ok(made),
            Self::Write(write) => write.after.ok_or_else(|| unexpected("a create")),
        }
    }

    fn updated(self) -> StoreResult<UpdatedAllocation> {
        match self {
            Self::Write(write) => match (write.before, write.after) {
                (Some(before), Some(after)) => Ok(UpdatedAllocation { before, after }),
                _ => Err(unexpected("an update")),
            },
            Self::Replay(_) => Err(unexpected("an update")),
        }
    }

    fn cancelled(self) -> StoreResult<Allocation> {
        match self {
            Self::Write(write) => match (write.before, write.after) {
                (Some(before), None) => Ok(before),
                _ => Err(unexpected("a cancel")),
            },
            Self::Replay(_) => Err(unexpected("a cancel")),
        }
    }
}

fn unexpected(command: &str) -> StoreError {
    StoreError::internal(
        format!("deciding {command}"),
        std::io::Error::other("the decision does not fit the command"),
    )
}

/// What a [`FleetSession`] does with the commands it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetPass {
    /// Decides them in a transaction that is rolled back at the end: what
    /// each would do, or why it is refused; a refused command counts as
    /// not made for the ones after it. Writes nothing (an import's
    /// validation and dry run).
    Check,
    /// Writes them, all or none: the first refusal fails the session.
    Apply,
}

/// What each command of a chunk did: its outcome, or why it was refused.
pub type Verdicts = Vec<Result<FleetOutcome, DomainError>>;

/// One transaction of fleet commands, sent in chunks (see
/// [`Store::fleet_session`]). Dropped unfinished, it writes nothing.
#[async_trait]
pub trait FleetSession: Send {
    /// Decides `chunk` after every chunk sent before it. On
    /// [`FleetPass::Apply`] a refusal fails the call, and the session with
    /// it (`StoreError::Rejected`); every entry of an answer is `Ok`.
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts>;

    /// Ends the session: rolls a check back; commits what was applied,
    /// answering once it is durable.
    async fn finish(self: Box<Self>) -> StoreResult<()>;
}

/// Shorthand for storage results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the service persists, one trait per concern: a decorator
/// (the cache, the meters) implements the concerns it changes and takes
/// the others from the store it wraps ([`Layered`]).
///
/// Reads see every write that was acknowledged before they started.
pub trait Store: BookingStore + FleetStore + EventLog + Maintenance {}

impl<T: BookingStore + FleetStore + EventLog + Maintenance + ?Sized> Store for T {}

/// Bookings: each change decided by [`crate::domain::booking`] inside the
/// store's transaction (see [`steps`]), and the history.
#[async_trait]
pub trait BookingStore: Send + Sync + 'static {
    /// Books `new.vehicle_id` for `new.employee_id` on `new.date`, or, for
    /// a retry with an idempotency key seen within the idempotency window,
    /// answers the booking made then.
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation>;

    /// One booking by id.
    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation>;

    /// Changes a booking as [`crate::domain::booking::decide`] allows.
    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation>;

    /// Cancels a booking as [`crate::domain::booking::decide`] allows;
    /// returns what was cancelled.
    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation>;

    /// Bookings matching `filter`, newest first (date descending, then id
    /// descending).
    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>>;
}

/// The fleet: employees, drivers, vehicles with their driver timelines,
/// out-of-service blocks, and the commands that change them.
#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    /// One employee by id, deactivated or not.
    async fn get_employee(&self, id: &str) -> StoreResult<Employee>;

    /// Employees in id order, of `department` when given; deactivated ones
    /// only with `show_deactivated`.
    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>>;

    /// One driver by id, deactivated or not.
    async fn get_driver(&self, id: &str) -> StoreResult<Driver>;

    /// Drivers in id order; deactivated ones only with `show_deactivated`.
    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>>;

    /// One vehicle by id, retired or not, with its driver on `on`.
    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle>;

    /// Vehicles in id order with their drivers on `on`; retired ones only
    /// with `show_retired`.
    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>>;

    /// Vehicles that can be booked on `date` (today or later), in id order,
    /// with their drivers that day: those the domain's definition of
    /// bookable admits, and not booked.
    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>>;

    /// The out-of-service blocks of a vehicle, in id (creation) order.
    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>>;

    /// Applies fleet commands in order, in one transaction: all of them or
    /// none. Each is decided by [`crate::domain::admin::decide`] from the
    /// facts as the commands before it left them.
    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>>;

    /// Opens a session that decides fleet commands in chunks, in order, in
    /// one transaction, as [`FleetStore::apply_fleet`] would: each command
    /// is decided from the facts as the commands before it, in this chunk
    /// and the earlier ones, left them. An import sends its rows this way,
    /// so that no more than a chunk of them is held at once.
    ///
    /// On SQLite the session holds the writer until it ends: finish it (or
    /// drop it) before making any other write, and send chunks promptly.
    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>>;
}

/// The event log: every change's event, in sequence order.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Events matching `filter` with a sequence above `page.after`, oldest
    /// first. Events are not counted: `total_size` is 0.
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>>;

    /// A sequence up to which every event is committed and readable,
    /// raised as writes commit (on MongoDB, the writes of every replica):
    /// what wakes watchers, who may move their position up to it. It never
    /// runs ahead of what a read can see.
    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The newest sequence up to which every event is committed and
    /// readable (0 before the first), pruned or not, read from the store
    /// itself: on MongoDB it counts every replica's writes, where the
    /// signal may lag.
    async fn latest_event_sequence(&self) -> StoreResult<u64>;

    /// The highest sequence handed out so far, committed or not: a position
    /// above it was never issued. On SQLite, the newest event's; on MongoDB
    /// it may be ahead of [`Self::latest_event_sequence`] while writes are
    /// in flight or a new primary catches up.
    async fn sequences_taken(&self) -> StoreResult<u64>;

    /// Deletes up to `limit` of the events older than `before`; returns how
    /// many it deleted.
    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64>;
}

/// Health, seeding and upkeep.
#[async_trait]
pub trait Maintenance: Send + Sync + 'static {
    /// Succeeds when the store can serve reads and writes; drives health.
    async fn ping(&self) -> StoreResult<()>;

    /// Whether the store holds no employees, vehicles or bookings.
    async fn is_empty(&self) -> StoreResult<bool>;

    /// Deletes everything, in one transaction where the backend has them.
    async fn reset(&self) -> StoreResult<()>;

    /// Adds employees, and vehicles with their drivers, who have driven them
    /// since ever ([`crate::domain::fleet::seeded_timeline`]; for seeding).
    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()>;

    /// Adds bookings as they are, past ones included (for seeding). The
    /// uniqueness rules still hold: a batch that breaks one is refused whole.
    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()>;

    /// The key page tokens are signed with: the stored one, or `candidate`,
    /// stored now, when there is none yet (the first start). Replicas that
    /// race on a first start all get the one that was stored. `reset` keeps
    /// it.
    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey>;
}
