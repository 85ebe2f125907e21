//! The embedded store: SQLite in WAL mode, in `--data-dir`.
//!
//! The default backend, so that the service runs on a fresh machine with no
//! database server. One writer thread commits in groups (see [`writer`]);
//! a pool of read-only connections serves reads beside it (see [`reader`]).

mod bookings;
mod errors;
mod events;
mod fleet;
mod maintenance;
mod reader;
mod rows;
mod schema;
mod transaction;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};

use crate::domain::{DomainError, Resource};
use crate::storage::StoreResult;

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

/// `row`, or a not-found refusal naming `resource` and `id`.
fn found<T>(resource: Resource, id: &str, row: Option<T>) -> StoreResult<T> {
    row.ok_or_else(|| DomainError::not_found(resource, id).into())
}

#[cfg(test)]
mod tests;
