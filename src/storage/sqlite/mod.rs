//! The embedded store: SQLite in WAL mode, in `--data-dir`.
//!
//! The default backend, so that the service runs on a fresh machine with no
//! database server. One writer thread commits in groups (see [`writer`]);
//! a pool of read-only connections serves reads beside it (see [`reader`]).

mod events;
mod fleet;
mod queries;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::domain::booking::BookingCommand;
use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, DomainError, Driver, Employee, Event,
    EventFilter, FleetOutcome, FleetRequest, HistoryCursor, HistoryFilter, NewAllocation, Page,
    PageKey, PageRequest, Resource, UpdatedAllocation, Vehicle, VehicleBlock,
};
use crate::storage::{
    Decided as _, FleetPass, FleetSession, Store, StoreError, StoreResult, Verdicts,
};
use tokio::sync::mpsc;

pub use schema::MigrationError;

use reader::ReadPool;
use writer::Writer;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "vehicle-allocation.sqlite3";

/// How many reads may run at once.
const READ_CONNECTIONS: usize = 4;

/// The writer's page cache while serving: writes touch few pages.
const SERVING_WRITER_CACHE_MIB: u32 = 8;

/// The writer's page cache while seeding.
const LOADING_WRITER_CACHE_MIB: u32 = 256;

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: ReadPool,
    /// The data directory's lock, held while the store is open.
    _lock: std::fs::File,
    /// A read connection for health checks alone.
    health: Arc<std::sync::Mutex<Connection>>,
    /// The newest committed event's sequence, set by the writer.
    events: tokio::sync::watch::Receiver<u64>,
}

/// The writer thread ends, and the database is closed, before the data
/// directory's lock is let go.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.writer.stop();
    }
}

/// The file in the data directory that one process at a time holds locked,
/// with that process's id in it.
pub const LOCK_FILE: &str = "vehicle-allocation.lock";

/// Why the embedded store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot prepare the database {path}: {source}")]
    Migrate {
        path: PathBuf,
        source: MigrationError,
    },
    #[error("cannot start the database writer: {0}")]
    Spawn(std::io::Error),
    #[error(
        "the data directory {path} is in use by another process (pid {pid}); stop it first, or give this one another DATA_DIR"
    )]
    Locked { path: PathBuf, pid: String },
    #[error("cannot lock the data directory {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database {path} is an empty file, which is not a store this service made: restore it from a backup, \
         or delete it to start with an empty store"
    )]
    EmptyFile { path: PathBuf },
    #[error(
        "the database {path} fails SQLite's integrity check ({detail}): stop, keep a copy of the data directory, and restore \
         the database from a backup (or try `sqlite3 {path} .recover`); SKIP_INTEGRITY_CHECK=true starts without the check"
    )]
    Corrupt { path: PathBuf, detail: String },
}

/// Runs SQLite's `quick_check` over the whole database at `path`; returns
/// how long it took.
fn quick_check(path: &Path) -> Result<std::time::Duration, OpenError> {
    let started = std::time::Instant::now();
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            OpenError::Open {
                path: path.to_owned(),
                source,
            }
        })?;
    let corrupt = |detail: String| OpenError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let mut statement = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|error| corrupt(error.to_string()))?;
    let problems = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(|error| corrupt(error.to_string()))?;
    if problems != ["ok"] {
        return Err(corrupt(problems.join("; ")));
    }
    Ok(started.elapsed())
}

/// Takes the data directory's lock, or names the process holding it.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = data_dir.join(LOCK_FILE);
    let lock_err = |source| OpenError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(OpenError::Locked {
                path: data_dir.to_owned(),
                pid: pid.trim().to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(lock_err(error)),
    }
    // Fixed width, so that a reader never sees part of an older pid.
    file.rewind().map_err(lock_err)?;
    write!(file, "{:<20}", std::process::id()).map_err(lock_err)?;
    file.set_len(20).map_err(lock_err)?;
    Ok(file)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, for serving.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        Self::open_with_writer_cache(data_dir, SERVING_WRITER_CACHE_MIB, false)
    }

    /// Opens the store for serving after SQLite's `quick_check` of the
    /// whole database, run before anything (a migration) writes to it: a
    /// store with damaged pages is refused at startup rather than failing
    /// the calls that touch them.
    pub fn open_checked(data_dir: &Path) -> Result<Self, OpenError> {
        Self::open_with_writer_cache(data_dir, SERVING_WRITER_CACHE_MIB, true)
    }

    /// Opens the store for loading much data at once (seeding): the writer
    /// gets a large page cache.
    pub fn open_for_loading(data_dir: &Path) -> Result<Self, OpenError> {
        Self::open_with_writer_cache(data_dir, LOADING_WRITER_CACHE_MIB, false)
    }

    fn open_with_writer_cache(
        data_dir: &Path,
        writer_cache_mib: u32,
        integrity_check: bool,
    ) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        // A directory this service has used holds its lock file.
        let used_before = data_dir.join(LOCK_FILE).exists();
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        // SQLite takes an empty file for an empty database: a store that
        // lost its contents would serve as a new one. Only a new data
        // directory may hold an empty file (one made ready for us).
        let size = std::fs::metadata(&path).map(|meta| meta.len()).ok();
        if used_before && size == Some(0) {
            return Err(OpenError::EmptyFile { path });
        }

        let mut conn = Connection::open(&path).map_err(open_err)?;
        schema::configure_writer(&conn, writer_cache_mib).map_err(open_err)?;
        // A new database has nothing to check.
        if integrity_check && size.is_some_and(|size| size > 0) {
            let took = quick_check(&path)?;
            tracing::info!(
                took_ms = took.as_millis() as u64,
                "the database passed SQLite's quick_check"
            );
        }
        // A migration may sort a whole table (version 7 sorts every
        // event's subjects): its sorter spills to a temporary file rather
        // than holding it all in memory.
        conn.pragma_update(None, "temp_store", "FILE")
            .map_err(open_err)?;
        schema::migrate(&mut conn).map_err(|source| OpenError::Migrate {
            path: path.clone(),
            source,
        })?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let latest: i64 = conn
            .query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
                [],
                |row| row.get(0),
            )
            .map_err(open_err)?;
        let (signal, events) = tokio::sync::watch::channel(latest as u64);

        let readers = (0..READ_CONNECTIONS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                schema::configure_reader(&reader)?;
                Ok(reader)
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(open_err)?;

        let health = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| schema::configure_reader(&conn).map(|()| conn))
        .map_err(open_err)?;
        let checkpoints = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| schema::configure_checkpointer(&conn).map(|()| conn))
        .map_err(open_err)?;
        Ok(Self {
            path,
            health: Arc::new(std::sync::Mutex::new(health)),
            writer: Writer::spawn(conn, checkpoints, signal).map_err(OpenError::Spawn)?,
            events,
            readers: ReadPool::new(readers),
            _lock: lock,
        })
    }

    /// Makes every write batch fail as on a full disk (`SQLITE_FULL`), or
    /// work again: for fault-injection tests.
    #[doc(hidden)]
    pub fn inject_full_disk(&self, on: bool) {
        self.writer.inject_full_disk(on);
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn found<T>(resource: Resource, id: &str, row: Option<T>) -> StoreResult<T> {
    row.ok_or_else(|| DomainError::not_found(resource, id).into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        let decision = self
            .writer
            .write(move |conn| queries::write_booking(conn, &BookingCommand::Create(new)))
            .await?;
        decision.created()
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| {
                found(
                    Resource::Allocation,
                    &id,
                    queries::find_allocation(conn, &id)?,
                )
            })
            .await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        let decision = self
            .writer
            .write(move |conn| queries::write_booking(conn, &BookingCommand::Update(update)))
            .await?;
        decision.updated()
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        let decision = self
            .writer
            .write(move |conn| queries::write_booking(conn, &BookingCommand::Cancel(deletion)))
            .await?;
        decision.cancelled()
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| queries::list_allocation_history(conn, &filter, &page))
            .await
    }

    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Employee, &id, fleet::find_employee(conn, &id)?))
            .await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        let department = department.map(str::to_owned);
        self.readers
            .read(move |conn| {
                fleet::list_employees(conn, department.as_deref(), show_deactivated, &page)
            })
            .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Driver, &id, fleet::find_driver(conn, &id)?))
            .await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.readers
            .read(move |conn| fleet::list_drivers(conn, show_deactivated, &page))
            .await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Vehicle, &id, fleet::find_vehicle(conn, &id, on)?))
            .await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| fleet::list_vehicles(conn, on, false, show_retired, &page))
            .await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| fleet::list_vehicles(conn, date, true, false, &page))
            .await
    }

    async fn list_vehicle_blocks(
        &self,
        vehicle_id: &str,
        page: PageRequest<String>,
    ) -> StoreResult<Page<VehicleBlock>> {
        let vehicle_id = vehicle_id.to_owned();
        self.readers
            .read(move |conn| {
                if fleet::find_vehicle(conn, &vehicle_id, crate::domain::fleet::timeline_start())?
                    .is_none()
                {
                    return Err(DomainError::not_found(Resource::Vehicle, &vehicle_id).into());
                }
                fleet::list_blocks(conn, &vehicle_id, &page)
            })
            .await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        self.writer
            .write(move |conn| fleet::apply_fleet(conn, &requests))
            .await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        // One chunk each way at a time: the memory a session holds.
        let (chunks, mut received) = mpsc::channel(1);
        let (answer, answers) = mpsc::channel(1);
        let done = tokio::spawn(
            self.writer
                .write_alone(move |conn| fleet::run_session(conn, pass, &mut received, &answer)),
        );
        Ok(Box::new(SqliteFleetSession {
            chunks,
            answers,
            done: Some(done),
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        if !self.writer.is_running() {
            return Err(StoreError::unavailable(
                "the SQLite writer has stopped",
                std::io::Error::other("writer thread exited"),
            ));
        }
        // Writes failed for a storage reason (full disk, read-only file):
        // not serving until a probe write goes through.
        if let Some(failure) = self.writer.failure() {
            self.writer.write(queries::probe_write).await.map_err(|_| {
                StoreError::unavailable("writing to the database", std::io::Error::other(failure))
            })?;
        }
        // Reading the schema touches the file, so a vanished or unreadable
        // database shows up here. On a connection of its own: health must
        // not queue behind the readers' requests.
        let conn = Arc::clone(&self.health);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            conn.prepare_cached("SELECT count(*) FROM sqlite_schema")?
                .query_row([], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
        .map_err(|error| StoreError::internal("pinging SQLite", error))?
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.readers.read(queries::is_empty).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| events::list(conn, &filter, &page))
            .await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.clone()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        self.readers.read(events::latest_sequence).await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.writer
            .write(move |conn| events::prune(conn, before, limit))
            .await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        self.writer
            .write(move |conn| queries::page_token_key(conn, &candidate))
            .await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.writer.write(queries::reset).await
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.writer
            .write(move |conn| queries::insert_fleet(conn, &employees, &vehicles))
            .await
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.writer
            .write(move |conn| queries::insert_allocations(conn, &allocations))
            .await
    }
}

#[cfg(test)]
mod tests;

/// A fleet session: a request on the writer's thread that takes chunks
/// through `chunks` and answers through `answers` (see
/// [`fleet::run_session`]).
struct SqliteFleetSession {
    chunks: mpsc::Sender<fleet::SessionMessage>,
    answers: mpsc::Receiver<StoreResult<Verdicts>>,
    /// The request's end: once the transaction is committed (or not).
    done: Option<tokio::task::JoinHandle<StoreResult<()>>>,
}

impl SqliteFleetSession {
    /// Why the request ended early.
    async fn ended(&mut self) -> StoreError {
        match self.done.take() {
            Some(done) => match done.await {
                Ok(Err(error)) => error,
                Ok(Ok(())) => session_failed("the session ended early"),
                Err(_) => session_failed("the session's task failed"),
            },
            None => session_failed("the session has ended"),
        }
    }
}

fn session_failed(why: &str) -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other(why.to_owned()),
    )
}

#[async_trait]
impl FleetSession for SqliteFleetSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> StoreResult<Verdicts> {
        if self
            .chunks
            .send(fleet::SessionMessage::Chunk(chunk))
            .await
            .is_err()
        {
            return Err(self.ended().await);
        }
        match self.answers.recv().await {
            Some(answer) => answer,
            None => Err(self.ended().await),
        }
    }

    async fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let _ = self.chunks.send(fleet::SessionMessage::Finish).await;
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(session_failed("the session's task failed"))),
            None => Err(session_failed("the session has ended")),
        }
    }
}
