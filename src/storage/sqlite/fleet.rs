//! The SQL of fleet administration: the facts a fleet command is decided
//! from, the writes it decides, and the fleet's reads.

use crate::domain::fleet::timeline_start;
use crate::domain::{DomainError, FleetOutcome, Resource};
use crate::storage::FleetSession;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::bookings::count_bookings;
use super::rows::{ALLOCATION_COLUMNS, allocation_from_row, days, millis, read_date, read_instant};
use super::transaction::SqliteTransaction;
use super::{SqliteStore, found};
use crate::domain::admin::{BookingOwner, FactQuery, Facts, FleetRequest, FleetWrite, Unique};
use crate::domain::{Assignment, Driver, Employee, Page, PageRequest, Vehicle, VehicleBlock};
use crate::storage::FleetStore;
use crate::storage::steps::{self, without_waiting};
use crate::storage::{FleetPass, StoreError, StoreResult, Verdicts};
use async_trait::async_trait;
use tokio::sync::mpsc;

pub const EMPLOYEE_COLUMNS: &str =
    "id, name, email, department, active, create_time, update_time, version";
const DRIVER_COLUMNS: &str =
    "d.id, d.name, d.phone, d.license_number, d.active, d.create_time, d.update_time, d.version";
const VEHICLE_ROW: &str = "v.id, v.registration, v.make, v.model, v.seats, v.retired, v.create_time, v.update_time, v.version";
const BLOCK_COLUMNS: &str =
    "id, vehicle_id, start_date, end_date, reason, create_time, update_time, version";

/// A vehicle with the driver who drives it on `?1`, if anyone does.
fn vehicle_select() -> String {
    format!(
        "SELECT {VEHICLE_ROW}, {DRIVER_COLUMNS} FROM vehicles v
           LEFT JOIN driver_assignments a ON a.vehicle_id = v.id AND {COVERS}
           LEFT JOIN drivers d ON d.id = a.driver_id"
    )
}

fn version(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(idx)? as u64)
}

pub fn employee_from_row(row: &Row<'_>) -> rusqlite::Result<Employee> {
    Ok(Employee {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        department: row.get(3)?,
        active: row.get(4)?,
        create_time: read_instant(row, 5)?,
        update_time: read_instant(row, 6)?,
        version: version(row, 7)?,
    })
}

/// A driver from the eight columns from `at`.
fn driver_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Driver> {
    Ok(Driver {
        id: row.get(at)?,
        name: row.get(at + 1)?,
        phone: row.get(at + 2)?,
        license_number: row.get(at + 3)?,
        active: row.get(at + 4)?,
        create_time: read_instant(row, at + 5)?,
        update_time: read_instant(row, at + 6)?,
        version: version(row, at + 7)?,
    })
}

fn driver_from_row(row: &Row<'_>) -> rusqlite::Result<Driver> {
    driver_at(row, 0)
}

/// A vehicle from [`vehicle_select`]'s columns.
pub fn vehicle_from_row(row: &Row<'_>) -> rusqlite::Result<Vehicle> {
    let driver = match row.get::<_, Option<String>>(9)? {
        Some(_) => Some(driver_at(row, 9)?),
        None => None,
    };
    Ok(Vehicle {
        id: row.get(0)?,
        registration: row.get(1)?,
        make: row.get(2)?,
        model: row.get(3)?,
        seats: row.get(4)?,
        retired: row.get(5)?,
        create_time: read_instant(row, 6)?,
        update_time: read_instant(row, 7)?,
        version: version(row, 8)?,
        driver,
    })
}

fn block_from_row(row: &Row<'_>) -> rusqlite::Result<VehicleBlock> {
    Ok(VehicleBlock {
        id: row.get(0)?,
        vehicle_id: row.get(1)?,
        start_date: read_date(row, 2)?,
        end_date: read_date(row, 3)?,
        reason: row.get(4)?,
        create_time: read_instant(row, 5)?,
        update_time: read_instant(row, 6)?,
        version: version(row, 7)?,
    })
}

// ------------------------------------------------------------------- reads

pub fn find_employee(conn: &Connection, id: &str) -> StoreResult<Option<Employee>> {
    let sql = format!("SELECT {EMPLOYEE_COLUMNS} FROM employees WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], employee_from_row)
        .optional()?)
}

pub fn find_driver(conn: &Connection, id: &str) -> StoreResult<Option<Driver>> {
    let sql = format!("SELECT {DRIVER_COLUMNS} FROM drivers d WHERE d.id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], driver_from_row)
        .optional()?)
}

/// One vehicle with its driver on `on`.
pub fn find_vehicle(conn: &Connection, id: &str, on: NaiveDate) -> StoreResult<Option<Vehicle>> {
    let sql = format!("{} WHERE v.id = ?2", vehicle_select());
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![days(on), id], vehicle_from_row)
        .optional()?)
}

/// A vehicle's driver timeline, oldest period first.
pub fn timeline(conn: &Connection, vehicle_id: &str) -> StoreResult<Vec<Assignment>> {
    let rows = conn
        .prepare_cached(
            "SELECT driver_id, start_date, end_date FROM driver_assignments
              WHERE vehicle_id = ?1 ORDER BY start_date",
        )?
        .query_map([vehicle_id], |row| {
            let end: Option<i32> = row.get(2)?;
            Ok(Assignment {
                driver_id: row.get(0)?,
                start: read_date(row, 1)?,
                end: end.and_then(NaiveDate::from_epoch_days),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn find_block(conn: &Connection, id: &str) -> StoreResult<Option<VehicleBlock>> {
    let sql = format!("SELECT {BLOCK_COLUMNS} FROM vehicle_blocks WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], block_from_row)
        .optional()?)
}

/// The block that puts `vehicle_id` out of service on `date`, if any.
pub fn block_on(
    conn: &Connection,
    vehicle_id: &str,
    date: NaiveDate,
) -> StoreResult<Option<VehicleBlock>> {
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM vehicle_blocks
          WHERE vehicle_id = ?1 AND end_date >= ?2 AND start_date <= ?2
          ORDER BY start_date, id LIMIT 1"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![vehicle_id, days(date)], block_from_row)
        .optional()?)
}

/// One page of employees, of one department when given.
pub fn list_employees(
    conn: &Connection,
    department: Option<&str>,
    show_deactivated: bool,
    page: &PageRequest<String>,
) -> StoreResult<Page<Employee>> {
    let after = page.after.as_deref().unwrap_or("");
    let limit = (page.size + 1) as i64;
    // `active >= ?` keeps one statement per filter: 0 takes everyone.
    let min_active = i64::from(!show_deactivated);
    let (rows, total) = match department {
        Some(department) => {
            let sql = format!(
                "SELECT {EMPLOYEE_COLUMNS} FROM employees
                  WHERE department = ?1 AND id > ?2 AND active >= ?4 ORDER BY id LIMIT ?3"
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(
                    params![department, after, limit, min_active],
                    employee_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM employees WHERE department = ?1 AND active >= ?2",
                )?
                .query_row(params![department, min_active], |row| row.get(0))?;
            (rows, total)
        }
        None => {
            let sql = format!(
                "SELECT {EMPLOYEE_COLUMNS} FROM employees
                  WHERE id > ?1 AND active >= ?3 ORDER BY id LIMIT ?2"
            );
            let rows = conn
                .prepare_cached(&sql)?
                .query_map(params![after, limit, min_active], employee_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let total: i64 = conn
                .prepare_cached("SELECT count(*) FROM employees WHERE active >= ?1")?
                .query_row([min_active], |row| row.get(0))?;
            (rows, total)
        }
    };
    Ok(Page::from_rows(rows, page.size, total as u64))
}

pub fn list_drivers(
    conn: &Connection,
    show_deactivated: bool,
    page: &PageRequest<String>,
) -> StoreResult<Page<Driver>> {
    let after = page.after.as_deref().unwrap_or("");
    let min_active = i64::from(!show_deactivated);
    let sql = format!(
        "SELECT {DRIVER_COLUMNS} FROM drivers d WHERE d.id > ?1 AND d.active >= ?3
          ORDER BY d.id LIMIT ?2"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![after, (page.size + 1) as i64, min_active],
            driver_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM drivers WHERE active >= ?1")?
        .query_row([min_active], |row| row.get(0))?;
    Ok(Page::from_rows(rows, page.size, total as u64))
}

/// Whether vehicle `v` is driven on `?1`: a timeline period covers it.
/// [`crate::domain::fleet::driver_on`] in SQL; timelines don't overlap, so
/// at most one period matches.
const COVERS: &str = "a.start_date <= ?1 AND (a.end_date IS NULL OR a.end_date > ?1)";

/// Whether vehicle `v` can be booked on `?1`: [`crate::domain::fleet::bookable`]
/// in SQL.
fn bookable_condition() -> String {
    format!(
        "v.retired = 0
        AND EXISTS (SELECT 1 FROM driver_assignments a WHERE a.vehicle_id = v.id AND {COVERS})
        AND NOT EXISTS (SELECT 1 FROM vehicle_blocks b WHERE b.vehicle_id = v.id
                         AND b.end_date >= ?1 AND b.start_date <= ?1)
        AND NOT EXISTS (SELECT 1 FROM allocations x
                         WHERE x.vehicle_id = v.id AND x.allocation_date = ?1)"
    )
}

/// How many vehicles can be booked on `?1`, exactly, without probing the
/// bookings of every vehicle (the probes into a million bookings are what
/// cost: [`bookable_condition`] counted over 1,000 vehicles takes about
/// 20 times as long as this). Bookable = driven − driven but retired or
/// blocked − booked + booked but closed (retired, blocked or not driven).
/// Only the `odd` vehicles can be closed: retired ones, blocked ones, and
/// those with a period that leaves the day uncovered (a vehicle with
/// periods and none covering the day has one that starts after it or ends
/// by it); each of those is probed. A vehicle with no timeline at all is
/// in none of them: when the driven and odd ones leave any vehicle
/// unaccounted for, the count falls back to the condition itself.
fn bookable_count() -> String {
    format!(
        "WITH
           driven(n) AS (SELECT count(*) FROM driver_assignments a WHERE {COVERS}),
           odd(id) AS (
               SELECT id FROM vehicles WHERE retired = 1
               UNION SELECT vehicle_id FROM vehicle_blocks
                      WHERE start_date <= ?1 AND end_date >= ?1
               UNION SELECT vehicle_id FROM driver_assignments
                      WHERE start_date > ?1 OR end_date <= ?1),
           facts(retired, blocked, driven, booked) AS (
               SELECT v.retired,
                      EXISTS (SELECT 1 FROM vehicle_blocks b WHERE b.vehicle_id = v.id
                               AND b.end_date >= ?1 AND b.start_date <= ?1),
                      EXISTS (SELECT 1 FROM driver_assignments a
                               WHERE a.vehicle_id = v.id AND {COVERS}),
                      EXISTS (SELECT 1 FROM allocations x
                               WHERE x.vehicle_id = v.id AND x.allocation_date = ?1)
                 FROM odd o JOIN vehicles v ON v.id = o.id)
         SELECT CASE
           WHEN (SELECT count(*) FROM vehicles) - (SELECT n FROM driven)
                > (SELECT count(*) FROM facts WHERE NOT driven)
           THEN (SELECT count(*) FROM vehicles v WHERE {bookable})
           ELSE (SELECT n FROM driven)
                - (SELECT count(*) FROM facts WHERE driven AND (retired OR blocked))
                - coalesce((SELECT bookings FROM daily_bookings WHERE allocation_date = ?1), 0)
                + (SELECT count(*) FROM facts WHERE booked AND (retired OR blocked OR NOT driven))
         END",
        bookable = bookable_condition()
    )
}

/// One page of vehicles with their drivers on `on`; with `free`, only those
/// that can be booked that day.
pub fn list_vehicles(
    conn: &Connection,
    on: NaiveDate,
    free: bool,
    show_retired: bool,
    page: &PageRequest<String>,
) -> StoreResult<Page<Vehicle>> {
    let after = page.after.clone().unwrap_or_default();
    let limit = (page.size + 1) as i64;
    let condition = if free {
        bookable_condition()
    } else if show_retired {
        "1".to_owned()
    } else {
        "v.retired = 0".to_owned()
    };
    let sql = format!(
        "{} WHERE v.id > ?2 AND {condition} ORDER BY v.id LIMIT ?3",
        vehicle_select()
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params![days(on), after, limit], vehicle_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = if free {
        conn.prepare_cached(&bookable_count())?
            .query_row([days(on)], |row| row.get(0))?
    } else {
        let count = format!("SELECT count(*) FROM vehicles v WHERE ?1 IS NOT NULL AND {condition}");
        conn.prepare_cached(&count)?
            .query_row([days(on)], |row| row.get(0))?
    };
    Ok(Page::from_rows(rows, page.size, total.max(0) as u64))
}

pub fn list_blocks(
    conn: &Connection,
    vehicle_id: &str,
    page: &PageRequest<String>,
) -> StoreResult<Page<VehicleBlock>> {
    let after = page.after.as_deref().unwrap_or("");
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM vehicle_blocks WHERE vehicle_id = ?1 AND id > ?2
          ORDER BY id LIMIT ?3"
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(
            params![vehicle_id, after, (page.size + 1) as i64],
            block_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM vehicle_blocks WHERE vehicle_id = ?1")?
        .query_row([vehicle_id], |row| row.get(0))?;
    Ok(Page::from_rows(rows, page.size, total as u64))
}

// ---------------------------------------------------------- facts, writes

/// Reads what `query` names.
pub fn read_facts(conn: &Connection, query: &FactQuery) -> StoreResult<Facts> {
    let mut facts = Facts::default();
    if let Some(id) = &query.employee {
        facts.employee = find_employee(conn, id)?;
    }
    if let Some(id) = &query.driver {
        facts.driver = find_driver(conn, id)?;
    }
    if let Some(id) = &query.vehicle {
        // The driver is not a fact: the timeline is.
        let found = find_vehicle(conn, id, crate::domain::fleet::timeline_start())?;
        if let Some(mut vehicle) = found {
            vehicle.driver = None;
            facts.vehicle = Some((vehicle, timeline(conn, id)?));
        }
    }
    if let Some(id) = &query.block {
        facts.block = find_block(conn, id)?;
    }
    for unique in &query.unique {
        let (sql, value) = match unique {
            Unique::EmployeeEmail(v) => ("SELECT id FROM employees WHERE email = ?1", v),
            Unique::VehicleRegistration(v) => {
                ("SELECT id FROM vehicles WHERE registration = ?1", v)
            }
            Unique::DriverLicence(v) => ("SELECT id FROM drivers WHERE license_number = ?1", v),
        };
        let holder: Option<String> = conn
            .prepare_cached(sql)?
            .query_row([value], |row| row.get(0))
            .optional()?;
        if let Some(holder) = holder {
            facts.taken.push((unique.clone(), holder));
        }
    }
    if let Some(q) = &query.bookings {
        let (column, id) = match &q.owner {
            BookingOwner::Employee(id) => ("employee_id", id),
            BookingOwner::Vehicle(id) => ("vehicle_id", id),
            BookingOwner::Driver(id) => ("driver_id", id),
        };
        let sql = format!(
            "SELECT {ALLOCATION_COLUMNS} FROM allocations
              WHERE {column} = ?1 AND allocation_date >= ?2 AND allocation_date <= ?3
              ORDER BY allocation_date, id"
        );
        let to = q.to.map_or(i32::MAX, days);
        facts.bookings = conn
            .prepare_cached(&sql)?
            .query_map(params![id, days(q.from), to], allocation_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    if let Some(driver_id) = &query.driver_timelines {
        let vehicles = conn
            .prepare_cached(
                "SELECT DISTINCT vehicle_id FROM driver_assignments WHERE driver_id = ?1
                  ORDER BY vehicle_id",
            )?
            .query_map([driver_id], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for vehicle_id in vehicles {
            let periods = timeline(conn, &vehicle_id)?;
            facts.driver_timelines.push((vehicle_id, periods));
        }
    }
    Ok(facts)
}

/// What a fleet session's caller sends the writer.
pub enum SessionMessage {
    Chunk(Vec<FleetRequest>),
    /// Ends the session: a check is rolled back, an apply kept.
    Finish,
}

/// A fleet session, run on the writer's thread alone, in a transaction of
/// its own: decides the chunks as they come and answers each, until told
/// to finish. A check is rolled back; so is an apply that fails, or whose
/// caller goes away unfinished. Without a savepoint around it, what it
/// changes beyond the page cache spills to the WAL instead of memory.
pub fn run_session(
    conn: &Connection,
    pass: FleetPass,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
) -> StoreResult<()> {
    // The page cache for bulk loads is large; a session's is bounded too.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |row| row.get(0))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{SESSION_CACHE_KIB}"))?;
    let ran = run_in_transaction(conn, pass, chunks, answers);
    conn.execute_batch(&format!("PRAGMA cache_size = {cache}"))?;
    ran
}

/// The page cache of a fleet session's transaction: what it changes
/// beyond it spills to the WAL.
const SESSION_CACHE_KIB: u32 = 32 * 1024;

fn run_in_transaction(
    conn: &Connection,
    pass: FleetPass,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
) -> StoreResult<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let served = serve(conn, chunks, answers, |conn, chunk| {
        let mut tx = SqliteTransaction(conn);
        without_waiting(steps::fleet_chunk(&mut tx, chunk, pass))
    });
    match (pass, served) {
        (FleetPass::Apply, Ok(())) => Ok(conn.execute_batch("COMMIT")?),
        (_, served) => {
            conn.execute_batch("ROLLBACK")?;
            served
        }
    }
}

fn serve(
    conn: &Connection,
    chunks: &mut mpsc::Receiver<SessionMessage>,
    answers: &mpsc::Sender<StoreResult<Verdicts>>,
    decide: impl Fn(&Connection, &[FleetRequest]) -> StoreResult<Verdicts>,
) -> StoreResult<()> {
    loop {
        match chunks.blocking_recv() {
            Some(SessionMessage::Chunk(chunk)) => {
                let decided = decide(conn, &chunk);
                let failed = decided.as_ref().err().cloned();
                if answers.blocking_send(decided).is_err() {
                    return Err(abandoned());
                }
                if let Some(error) = failed {
                    return Err(error);
                }
            }
            Some(SessionMessage::Finish) => return Ok(()),
            None => return Err(abandoned()),
        }
    }
}

fn abandoned() -> StoreError {
    StoreError::internal(
        "running a fleet session",
        std::io::Error::other("the session was dropped unfinished"),
    )
}

/// Writes what a command decided (not its events).
pub fn apply_write(conn: &Connection, write: &FleetWrite) -> StoreResult<()> {
    if let Some(e) = &write.employee {
        put_employee(conn, e)?;
    }
    if let Some(d) = &write.driver {
        put_driver(conn, d)?;
    }
    if let Some(v) = &write.vehicle {
        // The driver column is kept for older readers of the file: the
        // timeline's last driver, set below; a new vehicle's timeline is
        // written with it.
        let last = write
            .timelines
            .iter()
            .find(|(id, _)| *id == v.id)
            .and_then(|(_, t)| t.last())
            .map(|p| p.driver_id.as_str());
        put_vehicle(conn, v, last)?;
    }
    for (vehicle_id, periods) in &write.timelines {
        replace_timeline(conn, vehicle_id, periods)?;
    }
    if let Some(b) = &write.insert_block {
        conn.prepare_cached(
            "INSERT INTO vehicle_blocks (id, vehicle_id, start_date, end_date, reason,
                                         create_time, update_time, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            b.id,
            b.vehicle_id,
            days(b.start_date),
            days(b.end_date),
            b.reason,
            millis(b.create_time),
            millis(b.update_time),
            b.version as i64
        ])?;
    }
    if let Some(id) = &write.delete_block {
        conn.prepare_cached("DELETE FROM vehicle_blocks WHERE id = ?1")?
            .execute([id])?;
    }
    for booking in &write.cancel {
        let deleted = conn
            .prepare_cached("DELETE FROM allocations WHERE id = ?1 AND version = ?2")?
            .execute(params![booking.id, booking.version as i64])?;
        expect_one(deleted, "cancelling a booking")?;
        count_bookings(conn, booking.date, -1)?;
    }
    for (before, after) in &write.redrive {
        let changed = conn
            .prepare_cached(
                "UPDATE allocations SET driver_id = ?3, update_time = ?4, version = ?5
                  WHERE id = ?1 AND version = ?2",
            )?
            .execute(params![
                before.id,
                before.version as i64,
                after.driver_id,
                millis(after.update_time),
                after.version as i64
            ])?;
        expect_one(changed, "changing a booking's driver")?;
    }
    if let Some(erasure) = &write.erase {
        super::events::erase(conn, erasure)?;
    }
    Ok(())
}

/// Fails unless a guarded write changed exactly one row.
pub(super) fn expect_one(rows: usize, context: &str) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::internal(
            context.to_owned(),
            std::io::Error::other(format!("{rows} rows changed, expected 1")),
        ))
    }
}

pub fn put_employee(conn: &Connection, e: &Employee) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO employees (id, name, email, department, active, create_time, update_time, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
             department = excluded.department, active = excluded.active,
             update_time = excluded.update_time, version = excluded.version",
    )?
    .execute(params![
        e.id,
        e.name,
        e.email,
        e.department,
        e.active,
        millis(e.create_time),
        millis(e.update_time),
        e.version as i64
    ])?;
    Ok(())
}

pub fn put_driver(conn: &Connection, d: &Driver) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO drivers (id, name, phone, license_number, active, create_time, update_time, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone,
             license_number = excluded.license_number, active = excluded.active,
             update_time = excluded.update_time, version = excluded.version",
    )?
    .execute(params![
        d.id,
        d.name,
        d.phone,
        d.license_number,
        d.active,
        millis(d.create_time),
        millis(d.update_time),
        d.version as i64
    ])?;
    Ok(())
}

/// Inserts or updates a vehicle's own fields; `driver_id` sets the legacy
/// column when given (it must be for a new vehicle).
pub fn put_vehicle(conn: &Connection, v: &Vehicle, driver_id: Option<&str>) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO vehicles (id, registration, make, model, seats, driver_id, retired,
                               create_time, update_time, version)
         VALUES (?1, ?2, ?3, ?4, ?5, coalesce(?6, (SELECT driver_id FROM vehicles WHERE id = ?1)),
                 ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET registration = excluded.registration,
             make = excluded.make, model = excluded.model, seats = excluded.seats,
             driver_id = excluded.driver_id, retired = excluded.retired,
             update_time = excluded.update_time, version = excluded.version",
    )?
    .execute(params![
        v.id,
        v.registration,
        v.make,
        v.model,
        v.seats,
        driver_id,
        v.retired,
        millis(v.create_time),
        millis(v.update_time),
        v.version as i64
    ])?;
    Ok(())
}

pub fn replace_timeline(
    conn: &Connection,
    vehicle_id: &str,
    periods: &[Assignment],
) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM driver_assignments WHERE vehicle_id = ?1")?
        .execute([vehicle_id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO driver_assignments (vehicle_id, driver_id, start_date, end_date)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for p in periods {
        insert.execute(params![
            vehicle_id,
            p.driver_id,
            days(p.start),
            p.end.map(days)
        ])?;
    }
    if let Some(last) = periods.last() {
        conn.prepare_cached("UPDATE vehicles SET driver_id = ?2 WHERE id = ?1")?
            .execute(params![vehicle_id, last.driver_id])?;
    }
    Ok(())
}

#[async_trait]
impl FleetStore for SqliteStore {
    async fn get_employee(&self, id: &str) -> StoreResult<Employee> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Employee, &id, find_employee(conn, &id)?))
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
            .read(move |conn| list_employees(conn, department.as_deref(), show_deactivated, &page))
            .await
    }

    async fn get_driver(&self, id: &str) -> StoreResult<Driver> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Driver, &id, find_driver(conn, &id)?))
            .await
    }

    async fn list_drivers(
        &self,
        show_deactivated: bool,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Driver>> {
        self.readers
            .read(move |conn| list_drivers(conn, show_deactivated, &page))
            .await
    }

    async fn get_vehicle(&self, id: &str, on: NaiveDate) -> StoreResult<Vehicle> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Vehicle, &id, find_vehicle(conn, &id, on)?))
            .await
    }

    async fn list_vehicles(
        &self,
        show_retired: bool,
        on: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| list_vehicles(conn, on, false, show_retired, &page))
            .await
    }

    async fn list_available_vehicles(
        &self,
        date: NaiveDate,
        page: PageRequest<String>,
    ) -> StoreResult<Page<Vehicle>> {
        self.readers
            .read(move |conn| list_vehicles(conn, date, true, false, &page))
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
                if find_vehicle(conn, &vehicle_id, timeline_start())?.is_none() {
                    return Err(DomainError::not_found(Resource::Vehicle, &vehicle_id).into());
                }
                list_blocks(conn, &vehicle_id, &page)
            })
            .await
    }

    async fn apply_fleet(&self, requests: Vec<FleetRequest>) -> StoreResult<Vec<FleetOutcome>> {
        self.writer
            .write(move |conn| super::transaction::apply_fleet(conn, &requests))
            .await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        // One chunk each way at a time: the memory a session holds.
        let (chunks, mut received) = mpsc::channel(1);
        let (answer, answers) = mpsc::channel(1);
        let done = tokio::spawn(
            self.writer
                .write_alone(move |conn| run_session(conn, pass, &mut received, &answer)),
        );
        Ok(Box::new(SqliteFleetSession {
            chunks,
            answers,
            done: Some(done),
        }))
    }
}

/// A fleet session: a request on the writer's thread that takes chunks
/// through `chunks` and answers through `answers` (see
/// [`run_session`]).
struct SqliteFleetSession {
    chunks: mpsc::Sender<SessionMessage>,
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
            .send(SessionMessage::Chunk(chunk))
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
        let _ = self.chunks.send(SessionMessage::Finish).await;
        match self.done.take() {
            Some(done) => done
                .await
                .unwrap_or_else(|_| Err(session_failed("the session's task failed"))),
            None => Err(session_failed("the session has ended")),
        }
    }
}
