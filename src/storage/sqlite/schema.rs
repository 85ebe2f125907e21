//! The embedded store's tables, indexes and connection settings.
//!
//! Dates are stored as days since 1970-01-01 and instants as milliseconds
//! since the epoch: integers keep the indexes small and compare in the same
//! order as the values they stand for.

use rusqlite::Connection;

/// The schema version this build writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i32 = 1;

/// Version 1. Every index here serves a query in `queries.rs`; the unique
/// ones are also the booking rules, enforced by SQLite on every write.
const SCHEMA_V1: &str = "
CREATE TABLE employees (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    department TEXT NOT NULL
) STRICT;
CREATE INDEX employees_by_department ON employees (department, id);

CREATE TABLE drivers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    phone          TEXT NOT NULL,
    license_number TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE vehicles (
    id           TEXT PRIMARY KEY,
    registration TEXT NOT NULL UNIQUE,
    make         TEXT NOT NULL,
    model        TEXT NOT NULL,
    seats        INTEGER NOT NULL CHECK (seats >= 0),
    driver_id    TEXT NOT NULL REFERENCES drivers (id)
) STRICT;

CREATE TABLE allocations (
    id              TEXT PRIMARY KEY,
    employee_id     TEXT NOT NULL REFERENCES employees (id),
    vehicle_id      TEXT NOT NULL REFERENCES vehicles (id),
    driver_id       TEXT NOT NULL REFERENCES drivers (id),
    allocation_date INTEGER NOT NULL,
    purpose         TEXT NOT NULL,
    create_time     INTEGER NOT NULL,
    update_time     INTEGER NOT NULL,
    version         INTEGER NOT NULL
) STRICT;
-- The booking rules. Each also serves its history filter in date order: the
-- date is unique within a vehicle (an employee), so no tie-break is needed.
CREATE UNIQUE INDEX allocations_vehicle_date ON allocations (vehicle_id, allocation_date);
CREATE UNIQUE INDEX allocations_employee_date ON allocations (employee_id, allocation_date);
CREATE INDEX allocations_driver_date ON allocations (driver_id, allocation_date, id);
CREATE INDEX allocations_date ON allocations (allocation_date, id);

CREATE TABLE idempotency_keys (
    request_id    TEXT PRIMARY KEY,
    allocation_id TEXT NOT NULL,
    fingerprint   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
";

/// Settings for the one connection that writes.
///
/// WAL lets readers run beside the writer; `synchronous = FULL` makes every
/// commit reach the disk before it is acknowledged, so an acknowledged booking
/// survives a power loss, not just a clean restart.
pub fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}; WAL is required"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
}

/// Settings for the connections that only read.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA query_only = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Creates or upgrades the schema, in one transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let version: i32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(MigrationError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA_V1)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "the data directory was written by a newer version (schema {found}, this build supports up to {supported})"
    )]
    TooNew { found: i32, supported: i32 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}
