//! How values are kept in SQLite's columns, and rows read back: dates as
//! days since the epoch, instants as milliseconds.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;

use crate::domain::{Allocation, Driver, Employee, Vehicle, VehicleBlock};

pub const ALLOCATION_COLUMNS: &str = "id, employee_id, vehicle_id, driver_id, allocation_date, purpose, create_time, update_time, version";

pub(super) fn days(date: NaiveDate) -> i32 {
    date.to_epoch_days()
}

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn read_date(row: &Row<'_>, idx: usize) -> rusqlite::Result<NaiveDate> {
    let days: i32 = row.get(idx)?;
    NaiveDate::from_epoch_days(days).ok_or_else(|| out_of_range(idx, i64::from(days)))
}

pub(super) fn read_instant(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let ms: i64 = row.get(idx)?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| out_of_range(idx, ms))
}

fn out_of_range(idx: usize, value: i64) -> rusqlite::Error {
    rusqlite::Error::IntegralValueOutOfRange(idx, value)
}

pub(super) fn allocation_from_row(row: &Row<'_>) -> rusqlite::Result<Allocation> {
    Ok(Allocation {
        id: row.get(0)?,
        employee_id: row.get(1)?,
        vehicle_id: row.get(2)?,
        driver_id: row.get(3)?,
        date: read_date(row, 4)?,
        purpose: row.get(5)?,
        create_time: read_instant(row, 6)?,
        update_time: read_instant(row, 7)?,
        version: row.get::<_, i64>(8)? as u64,
    })
}

pub const EMPLOYEE_COLUMNS: &str =
    "id, name, email, department, active, create_time, update_time, version";
pub const DRIVER_COLUMNS: &str =
    "d.id, d.name, d.phone, d.license_number, d.active, d.create_time, d.update_time, d.version";
pub const VEHICLE_ROW: &str = "v.id, v.registration, v.make, v.model, v.seats, v.retired, v.create_time, v.update_time, v.version";
pub const BLOCK_COLUMNS: &str =
    "id, vehicle_id, start_date, end_date, reason, create_time, update_time, version";

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

pub fn driver_from_row(row: &Row<'_>) -> rusqlite::Result<Driver> {
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

pub fn block_from_row(row: &Row<'_>) -> rusqlite::Result<VehicleBlock> {
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
