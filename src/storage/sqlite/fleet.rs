//! The SQL of fleet administration: the facts a fleet command is decided
//! from, the writes it decides, and the fleet's reads.

use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};

use super::bookings::count_bookings;
use super::errors::expect_one;
use super::rows::{
    ALLOCATION_COLUMNS, BLOCK_COLUMNS, DRIVER_COLUMNS, EMPLOYEE_COLUMNS, VEHICLE_ROW,
    allocation_from_row, block_from_row, days, driver_from_row, employee_from_row, millis,
    read_date, vehicle_from_row,
};
use super::{SqliteStore, found};
use crate::domain::admin::{BookingOwner, FactQuery, Facts, FleetRequest, FleetWrite, Unique};
use crate::domain::fleet::timeline_start;
use crate::domain::{Assignment, Driver, Employee, Page, PageRequest, Vehicle, VehicleBlock};
use crate::domain::{DomainError, FleetOutcome, Resource};
use crate::storage::FleetSession;
use crate::storage::FleetStore;
use crate::storage::{FleetPass, StoreResult};

/// A vehicle with the driver who drives it on `?1`, if anyone does.
fn vehicle_select() -> String {
    format!(
        "SELECT {VEHICLE_ROW}, {DRIVER_COLUMNS} FROM vehicles v
           LEFT JOIN driver_assignments a ON a.vehicle_id = v.id AND {COVERS}
           LEFT JOIN drivers d ON d.id = a.driver_id"
    )
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
/// 20 times as long). Bookable = driven − closed (retired or blocked) −
/// booked + booked but closed. When every vehicle is driven that day (one
/// period covering it each), only the closed ones are probed; otherwise
/// see [`bookable_count_some_undriven`].
fn bookable_count() -> String {
    format!(
        "WITH driven(n) AS (SELECT count(*) FROM driver_assignments a WHERE {COVERS})
         SELECT CASE
           WHEN (SELECT count(*) FROM vehicles) = driven.n
           THEN driven.n
                - coalesce((SELECT bookings FROM daily_bookings WHERE allocation_date = ?1), 0)
                - (SELECT count(*) - coalesce(sum(EXISTS (SELECT 1 FROM allocations x
                                      WHERE x.vehicle_id = c.id AND x.allocation_date = ?1)), 0)
                     FROM (SELECT id FROM vehicles WHERE retired = 1
                           UNION SELECT vehicle_id FROM vehicle_blocks
                                  WHERE start_date <= ?1 AND end_date >= ?1) c)
           ELSE ({})
         END
         FROM driven",
        bookable_count_some_undriven()
    )
}

/// [`bookable_count`] when some vehicle has no driver on `?1`: driven −
/// driven but closed − booked + booked on a vehicle closed or not driven.
/// Only the `odd` vehicles can be closed or not driven: retired ones,
/// blocked ones, and those with a period that leaves the day uncovered (a
/// vehicle with periods and none covering the day has one that starts
/// after it or ends by it); each of those is probed. A vehicle with no
/// timeline at all is in none of them: when the driven and odd ones leave
/// any vehicle unaccounted for, the count falls back to the condition
/// itself.
fn bookable_count_some_undriven() -> String {
    // `facts` is read once and tallied in one pass: a CTE that is named
    // twice is otherwise run twice.
    format!(
        "WITH
           driven(n) AS (SELECT count(*) FROM driver_assignments a WHERE {COVERS}),
           odd(id) AS (
               SELECT id FROM vehicles WHERE retired = 1
               UNION SELECT vehicle_id FROM vehicle_blocks
                      WHERE start_date <= ?1 AND end_date >= ?1
               UNION SELECT vehicle_id FROM driver_assignments
                      WHERE start_date > ?1 OR end_date <= ?1),
           facts(retired, blocked, driven, booked) AS MATERIALIZED (
               SELECT v.retired,
                      EXISTS (SELECT 1 FROM vehicle_blocks b WHERE b.vehicle_id = v.id
                               AND b.end_date >= ?1 AND b.start_date <= ?1),
                      EXISTS (SELECT 1 FROM driver_assignments a
                               WHERE a.vehicle_id = v.id AND {COVERS}),
                      EXISTS (SELECT 1 FROM allocations x
                               WHERE x.vehicle_id = v.id AND x.allocation_date = ?1)
                 FROM odd o JOIN vehicles v ON v.id = o.id),
           tally(undriven, closed, closed_booked) AS (
               SELECT coalesce(sum(NOT driven), 0),
                      coalesce(sum(driven AND (retired OR blocked)), 0),
                      coalesce(sum(booked AND (retired OR blocked OR NOT driven)), 0)
                 FROM facts)
         SELECT CASE
           WHEN (SELECT count(*) FROM vehicles) - driven.n > tally.undriven
           THEN (SELECT count(*) FROM vehicles v WHERE {bookable})
           ELSE driven.n - tally.closed
                - coalesce((SELECT bookings FROM daily_bookings WHERE allocation_date = ?1), 0)
                + tally.closed_booked
         END
         FROM driven, tally",
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
        self.apply_fleet_batch(requests).await
    }

    async fn fleet_session(&self, pass: FleetPass) -> StoreResult<Box<dyn FleetSession>> {
        Ok(self.open_fleet_session(pass))
    }
}
