//! The embedded store: SQLite in WAL mode, in `--data-dir`.
//!
//! The default backend, so that the service runs on a fresh machine with no
//! database server. One writer thread commits in groups (see [`writer`]);
//! a pool of read-only connections serves reads beside it (see [`reader`]).

mod queries;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{Connection, OpenFlags};

use crate::domain::{
    Allocation, AllocationDeletion, AllocationUpdate, DomainError, Employee, HistoryCursor,
    HistoryFilter, NewAllocation, Page, PageRequest, Resource, UpdatedAllocation, Vehicle,
};
use crate::storage::{Store, StoreError, StoreResult};

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
}

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
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, for serving.
    pub fn open(data_dir: &Path) -> Result<Self, OpenError> {
        Self::open_with_writer_cache(data_dir, SERVING_WRITER_CACHE_MIB)
    }

    /// Opens the store for loading much data at once (seeding): the writer
    /// gets a large page cache.
    pub fn open_for_loading(data_dir: &Path) -> Result<Self, OpenError> {
        Self::open_with_writer_cache(data_dir, LOADING_WRITER_CACHE_MIB)
    }

    fn open_with_writer_cache(data_dir: &Path, writer_cache_mib: u32) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };

        let mut conn = Connection::open(&path).map_err(open_err)?;
        schema::configure_writer(&conn, writer_cache_mib).map_err(open_err)?;
        schema::migrate(&mut conn).map_err(|source| OpenError::Migrate {
            path: path.clone(),
            source,
        })?;
        conn.set_prepared_statement_cache_capacity(64);

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

        Ok(Self {
            path,
            writer: Writer::spawn(conn).map_err(OpenError::Spawn)?,
            readers: ReadPool::new(readers),
        })
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
        self.writer
            .write(move |conn| queries::create_allocation(conn, new))
            .await
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
        self.writer
            .write(move |conn| queries::update_allocation(conn, update))
            .await
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        self.writer
            .write(move |conn| queries::delete_allocation(conn, deletion))
            .await
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
            .read(move |conn| found(Resource::Employee, &id, queries::find_employee(conn, &id)?))
            .await
    }

    async fn list_employees(
        &self,
        department: Option<&str>,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Employee>> {
        let department = department.map(str::to_owned);
        self.readers
            .read(move |conn| queries::list_employees(conn, department.as_deref(), &page))
            .await
    }

    async fn get_vehicle(&self, id: &str) -> StoreResult<Vehicle> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Vehicle, &id, queries::find_vehicle(conn, &id)?))
            .await
    }

    async fn list_vehicles(&self, page: PageRequest<String>) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| queries::list_vehicles(conn, None, &page))
            .await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| queries::list_vehicles(conn, Some(date), &page))
            .await
    }

    async fn ping(&self) -> StoreResult<()> {
        if !self.writer.is_running() {
            return Err(StoreError::unavailable(
                "the SQLite writer has stopped",
                std::io::Error::other("writer thread exited"),
            ));
        }
        // Reading the schema touches the file, so a vanished or unreadable
        // database shows up here.
        self.readers
            .read(|conn| {
                conn.prepare_cached("SELECT count(*) FROM sqlite_schema")?
                    .query_row([], |row| row.get::<_, i64>(0))?;
                Ok(())
            })
            .await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.readers.read(queries::is_empty).await
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
