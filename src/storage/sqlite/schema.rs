//! The embedded store's tables, indexes and connection settings.
//!
//! Dates are stored as days since 1970-01-01 and instants as milliseconds
//! since the epoch: integers keep the indexes small and compare in the same
//! order as the values they stand for.

use rusqlite::Connection;

/// The schema version this build writes, kept in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i32 = 7;

/// Version 1. Every index here serves a query of the backend's modules;
/// the unique ones are a backstop of the booking rules, which
/// `crate::domain` decides.
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

/// Version 1's schema, for the upgrade test.
#[cfg(test)]
pub const SCHEMA_V1_FOR_TESTS: &str = SCHEMA_V1;

/// Version 2: bookings per day. Totals of date ranges (and of the whole
/// history) sum a few hundred of these rows instead of counting up to a
/// million index entries; free vehicles on a day are the fleet minus that
/// day's bookings. The write functions in `bookings.rs` keep it, in the same
/// savepoint as the bookings they write (triggers would, too, but they make
/// SQLite open a statement journal per row, which halves bulk loading).
const SCHEMA_V2: &str = "
CREATE TABLE daily_bookings (
    allocation_date INTEGER PRIMARY KEY,
    bookings        INTEGER NOT NULL CHECK (bookings >= 0)
) STRICT;
INSERT INTO daily_bookings (allocation_date, bookings)
    SELECT allocation_date, count(*) FROM allocations GROUP BY allocation_date;
";

/// Version 3: a development build kept the per-day totals with triggers
/// under version 2; drop them (the write functions keep the totals now) and
/// total afresh.
const SCHEMA_V3: &str = "
DROP TRIGGER IF EXISTS daily_bookings_on_insert;
DROP TRIGGER IF EXISTS daily_bookings_on_delete;
DROP TRIGGER IF EXISTS daily_bookings_on_move;
DELETE FROM daily_bookings;
INSERT INTO daily_bookings (allocation_date, bookings)
    SELECT allocation_date, count(*) FROM allocations GROUP BY allocation_date;
";

/// Version 4: the service's own settings, such as the key page tokens are
/// signed with.
const SCHEMA_V4: &str = "
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
";

/// Version 5: fleet administration. Employees and drivers can be
/// deactivated and vehicles retired; each has timestamps and a version (its
/// etag). A vehicle's drivers form a timeline of periods (vehicles already
/// stored keep their driver since ever); `vehicles.driver_id` stays, as the
/// driver of the timeline's last period. Vehicles can be out of service over
/// blocks of dates. A driver drives one vehicle per date: the unique index
/// on bookings' (driver, date) holds that for every booking.
const SCHEMA_V5: &str = "
ALTER TABLE employees ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE employees ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE employees ADD COLUMN update_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE employees ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX employees_active ON employees (active, id);

ALTER TABLE drivers ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE drivers ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE drivers ADD COLUMN update_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE drivers ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX drivers_active ON drivers (active, id);

ALTER TABLE vehicles ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vehicles ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vehicles ADD COLUMN update_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vehicles ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX vehicles_retired ON vehicles (retired, id);

CREATE TABLE driver_assignments (
    vehicle_id TEXT NOT NULL REFERENCES vehicles (id),
    driver_id  TEXT NOT NULL REFERENCES drivers (id),
    start_date INTEGER NOT NULL,
    end_date   INTEGER CHECK (end_date IS NULL OR end_date > start_date),
    PRIMARY KEY (vehicle_id, start_date)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX driver_assignments_driver_start ON driver_assignments (driver_id, start_date);
INSERT INTO driver_assignments (vehicle_id, driver_id, start_date, end_date)
    SELECT id, driver_id, 0, NULL FROM vehicles;

CREATE TABLE vehicle_blocks (
    id          TEXT PRIMARY KEY,
    vehicle_id  TEXT NOT NULL REFERENCES vehicles (id),
    start_date  INTEGER NOT NULL,
    end_date    INTEGER NOT NULL CHECK (end_date >= start_date),
    reason      TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    version     INTEGER NOT NULL
) STRICT;
CREATE INDEX vehicle_blocks_by_vehicle ON vehicle_blocks (vehicle_id, end_date);

DROP INDEX allocations_driver_date;
CREATE UNIQUE INDEX allocations_driver_date ON allocations (driver_id, allocation_date);
";

/// Version 6: the audit trail. One row per change, appended in the
/// savepoint of the write it records. AUTOINCREMENT so that a sequence is
/// never handed out twice, even after the newest events are pruned; a
/// rolled-back savepoint takes its sequence back, so readers see no gaps.
/// Snapshots are JSON; the filters read the columns beside them.
const SCHEMA_V6: &str = "
CREATE TABLE events (
    sequence         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_time       INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    resource         TEXT NOT NULL,
    actor_id         TEXT NOT NULL,
    actor_roles      TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    employee_id      TEXT,
    vehicle_id       TEXT,
    prior_vehicle_id TEXT,
    before           TEXT,
    after            TEXT
) STRICT;
CREATE INDEX events_by_time ON events (event_time);
CREATE INDEX events_by_resource ON events (resource, sequence);
CREATE INDEX events_by_employee ON events (employee_id, sequence) WHERE employee_id IS NOT NULL;
CREATE INDEX events_by_vehicle ON events (vehicle_id, sequence) WHERE vehicle_id IS NOT NULL;
CREATE INDEX events_by_prior_vehicle ON events (prior_vehicle_id, sequence)
    WHERE prior_vehicle_id IS NOT NULL;
";

/// Version 7: who an event concerns (its employee, its vehicles) is indexed
/// in sorted batches, not per event. Three indexes keyed by employee and
/// vehicle put each event's entries on pages spread over the whole index:
/// they doubled the pages a booking writes and cut creates by a third. The
/// writer instead adds the subjects of every few thousand events at once
/// (`events::index_subjects`), touching each subject's last page once per
/// batch; queries read the index up to `indexed_upto` and scan the short
/// tail after it. The events so far are indexed here, in one go.
const SCHEMA_V7: &str = "
DROP INDEX events_by_employee;
DROP INDEX events_by_vehicle;
DROP INDEX events_by_prior_vehicle;
CREATE TABLE event_subjects (
    subject  TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    PRIMARY KEY (subject, sequence)
) STRICT, WITHOUT ROWID;
CREATE TABLE event_index (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL
) STRICT;
INSERT OR IGNORE INTO event_subjects (subject, sequence)
    SELECT 'e:' || employee_id, sequence FROM events WHERE employee_id IS NOT NULL
    UNION ALL
    SELECT 'v:' || vehicle_id, sequence FROM events WHERE vehicle_id IS NOT NULL
    UNION ALL
    SELECT 'v:' || prior_vehicle_id, sequence FROM events WHERE prior_vehicle_id IS NOT NULL
    ORDER BY 1, 2;
-- After the rows: built from them in one sorted pass.
CREATE INDEX event_subjects_by_sequence ON event_subjects (sequence);
INSERT INTO event_index (id, indexed_upto)
    VALUES (1, coalesce((SELECT max(sequence) FROM events), 0));
";

/// WAL pages after which the writer checkpoints itself. The background
/// checkpointer has copied most of them by then, so the writer's checkpoint
/// is short, and lets the WAL start over: the file stays near this size
/// (4 KiB pages: 40 MiB).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Settings for the one connection that writes.
///
/// WAL lets readers run beside the writer; `synchronous = FULL` makes every
/// commit reach the disk before it is acknowledged, so an acknowledged booking
/// survives a power loss, not just a clean restart.
///
/// Savepoints keep their undo pages in memory (`temp_store`), not in a
/// temporary file. `cache_mib` is the page cache: small for serving, large
/// for bulk loads, where a small one spills and rereads the same index
/// pages over and over.
pub fn configure_writer(conn: &Connection, cache_mib: u32) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode stayed {mode}; WAL is required"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA temp_store = MEMORY;
         PRAGMA wal_autocheckpoint = {};
         PRAGMA cache_size = -{};",
        WRITER_AUTOCHECKPOINT_PAGES,
        u64::from(cache_mib) * 1024
    ))
}

/// Settings for the connection that checkpoints in the background (see
/// `writer::checkpoint_while_woken`): it syncs the database file like the
/// writer would.
pub fn configure_checkpointer(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;",
    )
}

/// Settings for the connections that only read.
pub fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    // SQLite's default page cache (about 2 MiB) per reader: 8 MiB each was
    // tried and cost resident memory (see docs/performance.md).
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
    let migrations = [
        SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7,
    ];
    for (target, migration) in (1..).zip(migrations) {
        if version < target {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", target)?;
            tx.commit()?;
        }
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
