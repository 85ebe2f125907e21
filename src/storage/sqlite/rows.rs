//! How values are kept in SQLite's columns, and rows read back: dates as
//! days since the epoch, instants as milliseconds.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Row;

use crate::domain::Allocation;

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
