//! Bookings on SQLite: the reads and writes of [`crate::storage::steps`]
//! for a booking change, the booking counts per day, and the history.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::errors::expect_one;
use super::rows::{ALLOCATION_COLUMNS, allocation_from_row, days, millis};
use super::{SqliteStore, found};
use crate::domain::booking::BookingCommand;
use crate::domain::booking::{BookingWrite, Slot, SlotIndex, SlotRule};
use crate::domain::{Allocation, HistoryCursor, HistoryFilter, Page, PageRequest};
use crate::domain::{
    AllocationDeletion, AllocationUpdate, NewAllocation, Resource, UpdatedAllocation,
};
use crate::storage::{BookingStore, Decided as _};
use crate::storage::{StoreError, StoreResult};

/// The booking id and fingerprint stored under `request_id` after
/// `live_after`.
pub(super) fn idempotency_key(
    conn: &Connection,
    request_id: &str,
    live_after: DateTime<Utc>,
) -> StoreResult<Option<(String, u64)>> {
    // Expired keys are purged on the way, so the table only ever holds
    // about one window's worth.
    conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
        .execute([millis(live_after)])?;
    let earlier: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT allocation_id, fingerprint FROM idempotency_keys WHERE request_id = ?1",
        )?
        .query_row([request_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(earlier.map(|(id, fingerprint)| (id, fingerprint as u64)))
}

/// The booking, other than `slot.except`, holding the slot under `rule`.
pub(super) fn slot_holder(
    conn: &Connection,
    rule: SlotRule,
    slot: &Slot,
) -> StoreResult<Option<String>> {
    let (sql, value) = match rule {
        SlotRule::Vehicle => (
            "SELECT id FROM allocations WHERE vehicle_id = ?1 AND allocation_date = ?2 AND id <> ?3",
            &slot.vehicle_id,
        ),
        SlotRule::Employee => (
            "SELECT id FROM allocations WHERE employee_id = ?1 AND allocation_date = ?2 AND id <> ?3",
            &slot.employee_id,
        ),
    };
    let except = slot.except.as_deref().unwrap_or("");
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params![value, days(slot.date), except], |row| row.get(0))
        .optional()?)
}

/// Writes a decided change: the booking, its day's total and its key.
pub(super) fn apply_booking(conn: &Connection, write: &BookingWrite) -> StoreResult<()> {
    match (&write.before, &write.after) {
        (None, Some(after)) => {
            insert_allocation(conn, after)?;
            count_bookings(conn, after.date, 1)?;
        }
        (Some(before), Some(after)) => {
            let changed = conn
                .prepare_cached(
                    "UPDATE allocations
                        SET vehicle_id = ?2, driver_id = ?3, allocation_date = ?4, purpose = ?5,
                            update_time = ?6, version = ?7
                      WHERE id = ?1 AND version = ?8",
                )?
                .execute(params![
                    after.id,
                    after.vehicle_id,
                    after.driver_id,
                    days(after.date),
                    after.purpose,
                    millis(after.update_time),
                    after.version as i64,
                    before.version as i64,
                ])?;
            expect_one(changed, "updating an allocation")?;
            if after.date != before.date {
                count_bookings(conn, before.date, -1)?;
                count_bookings(conn, after.date, 1)?;
            }
        }
        (Some(before), None) => {
            let deleted = conn
                .prepare_cached("DELETE FROM allocations WHERE id = ?1 AND version = ?2")?
                .execute(params![before.id, before.version as i64])?;
            expect_one(deleted, "cancelling an allocation")?;
            count_bookings(conn, before.date, -1)?;
        }
        (None, None) => {}
    }
    if let (Some((key, at)), Some(after)) = (&write.key, &write.after) {
        // Replaces an expired key not purged yet.
        conn.prepare_cached(
            "INSERT OR REPLACE INTO idempotency_keys (request_id, allocation_id, fingerprint, created_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            key.request_id,
            after.id,
            key.fingerprint as i64,
            millis(*at)
        ])?;
    }
    Ok(())
}

pub(super) fn insert_allocation(conn: &Connection, a: &Allocation) -> StoreResult<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO allocations (id, employee_id, vehicle_id, driver_id, allocation_date,
                                      purpose, create_time, update_time, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            a.id,
            a.employee_id,
            a.vehicle_id,
            a.driver_id,
            days(a.date),
            a.purpose,
            millis(a.create_time),
            millis(a.update_time),
            a.version as i64,
        ]);
    inserted.map(drop).map_err(|e| explain_conflict(conn, e, a))
}

/// Turns a unique-index violation into the booking rule it stands for
/// ([`SlotIndex::rule`]), naming the booking already holding the slot.
/// Only seeding relies on it: the booking write path decides from the
/// slot's facts, and the indexes there are a backstop.
fn explain_conflict(conn: &Connection, error: rusqlite::Error, wanted: &Allocation) -> StoreError {
    let index = match &error {
        rusqlite::Error::SqliteFailure(e, Some(message))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            // SQLite names the first column of the index that fired.
            if message.contains("allocations.vehicle_id") {
                SlotIndex::VehicleDate
            } else if message.contains("allocations.driver_id") {
                SlotIndex::DriverDate
            } else if message.contains("allocations.employee_id") {
                SlotIndex::EmployeeDate
            } else {
                return error.into();
            }
        }
        _ => return error.into(),
    };
    let rule = index.rule();
    let (column, value) = rule.field(wanted);
    let sql = format!(
        "SELECT id FROM allocations WHERE {column} = ?1 AND allocation_date = ?2 AND id <> ?3"
    );
    let holder = conn.prepare_cached(&sql).and_then(|mut select| {
        select
            .query_row(params![value, days(wanted.date), wanted.id], |row| {
                row.get::<_, String>(0)
            })
            .optional()
    });
    match holder {
        Ok(holder) => rule.refused(wanted, holder.unwrap_or_default()).into(),
        Err(lookup) => lookup.into(),
    }
}

/// Adds `change` to the bookings counted on `date`. Every write of
/// `allocations` calls this in the same savepoint, so the totals are always
/// those of the bookings.
pub(super) fn count_bookings(conn: &Connection, date: NaiveDate, change: i64) -> StoreResult<()> {
    // A decrease always finds its day's row; an upsert would first check
    // its negative insert value against `bookings >= 0`.
    let sql = if change < 0 {
        "UPDATE daily_bookings SET bookings = bookings + ?2 WHERE allocation_date = ?1"
    } else {
        "INSERT INTO daily_bookings (allocation_date, bookings) VALUES (?1, ?2)
         ON CONFLICT (allocation_date) DO UPDATE SET bookings = bookings + excluded.bookings"
    };
    conn.prepare_cached(sql)?
        .execute(params![days(date), change])?;
    Ok(())
}

/// One booking, if it exists.
pub fn find_allocation(conn: &Connection, id: &str) -> StoreResult<Option<Allocation>> {
    let sql = format!("SELECT {ALLOCATION_COLUMNS} FROM allocations WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], allocation_from_row)
        .optional()?)
}

/// The WHERE clause of a history query, and its parameters.
///
/// Built per combination of filters rather than with `(?1 IS NULL OR ...)`,
/// which would stop SQLite from choosing the index that fits the filters.
pub fn history_conditions(
    filter: &HistoryFilter,
    after: Option<&HistoryCursor>,
) -> (String, Vec<Value>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |condition: &str, value: Value, values: &mut Vec<Value>| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("?{}", values.len())));
    };
    let text = |s: &String| Value::Text(s.clone());
    if let Some(id) = &filter.employee_id {
        bind("employee_id = ?", text(id), &mut values);
    }
    if let Some(id) = &filter.vehicle_id {
        bind("vehicle_id = ?", text(id), &mut values);
    }
    if let Some(id) = &filter.driver_id {
        bind("driver_id = ?", text(id), &mut values);
    }
    if let Some(start) = filter.start_date {
        bind(
            "allocation_date >= ?",
            Value::Integer(days(start).into()),
            &mut values,
        );
    }
    if let Some(upper) = filter.last_date(after) {
        bind(
            "allocation_date <= ?",
            Value::Integer(days(upper).into()),
            &mut values,
        );
    }
    if let Some(cursor) = after {
        // As a row value, so that on the (date, id) index the page starts
        // at the cursor itself rather than at the end of the cursor's day,
        // which holds hundreds of bookings.
        values.push(Value::Integer(days(cursor.date).into()));
        values.push(Value::Text(cursor.id.clone()));
        let (d, i) = (values.len() - 1, values.len());
        conditions.push(format!("(allocation_date, id) < (?{d}, ?{i})"));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (clause, values)
}

/// The query for one page of history: up to `size + 1` rows, the extra one
/// telling whether another page follows.
pub fn history_page_query(
    filter: &HistoryFilter,
    page: &PageRequest<HistoryCursor>,
) -> (String, Vec<Value>) {
    let (clause, mut values) = history_conditions(filter, page.after.as_ref());
    values.push(Value::Integer((page.size + 1) as i64));
    let sql = format!(
        "SELECT {ALLOCATION_COLUMNS} FROM allocations{clause} \
         ORDER BY allocation_date DESC, id DESC LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

/// One page of the history report with its total.
pub fn list_allocation_history(
    conn: &Connection,
    filter: &HistoryFilter,
    page: &PageRequest<HistoryCursor>,
) -> StoreResult<Page<Allocation>> {
    let (sql, values) = history_page_query(filter, page);
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(values), allocation_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;

    let total = count_history(conn, filter)?;
    Ok(Page::from_rows(rows, page.size, total))
}

/// How many bookings match `filter`. A filter on dates alone is answered
/// from the per-day totals; the others count their (small) index range.
pub fn count_history(conn: &Connection, filter: &HistoryFilter) -> StoreResult<u64> {
    let by_id =
        filter.employee_id.is_some() || filter.vehicle_id.is_some() || filter.driver_id.is_some();
    let total: i64 = if by_id {
        let (clause, values) = history_conditions(filter, None);
        conn.prepare_cached(&format!("SELECT count(*) FROM allocations{clause}"))?
            .query_row(params_from_iter(values), |row| row.get(0))?
    } else {
        let start = filter.start_date.map_or(i32::MIN, days);
        let end = filter.end_date.map_or(i32::MAX, days);
        conn.prepare_cached(
            "SELECT coalesce(sum(bookings), 0) FROM daily_bookings
              WHERE allocation_date >= ?1 AND allocation_date <= ?2",
        )?
        .query_row(params![start, end], |row| row.get(0))?
    };
    Ok(total as u64)
}

#[async_trait]
impl BookingStore for SqliteStore {
    async fn create_allocation(&self, new: NewAllocation) -> StoreResult<Allocation> {
        let decision = self.write_booking(BookingCommand::Create(new)).await?;
        decision.created()
    }

    async fn get_allocation(&self, id: &str) -> StoreResult<Allocation> {
        let id = id.to_owned();
        self.readers
            .read(move |conn| found(Resource::Allocation, &id, find_allocation(conn, &id)?))
            .await
    }

    async fn update_allocation(&self, update: AllocationUpdate) -> StoreResult<UpdatedAllocation> {
        let decision = self.write_booking(BookingCommand::Update(update)).await?;
        decision.updated()
    }

    async fn delete_allocation(&self, deletion: AllocationDeletion) -> StoreResult<Allocation> {
        let decision = self.write_booking(BookingCommand::Cancel(deletion)).await?;
        decision.cancelled()
    }

    async fn list_allocation_history(
        &self,
        filter: &HistoryFilter,
        page: PageRequest<HistoryCursor>,
    ) -> StoreResult<Page<Allocation>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| list_allocation_history(conn, &filter, &page))
            .await
    }
}
