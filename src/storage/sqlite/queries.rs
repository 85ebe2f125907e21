//! The SQL of the embedded store: one function per operation, each run on a
//! connection that the caller has already placed in a transaction.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params, params_from_iter};

use crate::domain::booking::{
    self, BookingCommand, BookingDecision, BookingFacts, BookingWrite, Slot, Subject,
};
use crate::domain::event::{seeded_bookings, seeded_fleet};
use crate::domain::{
    Allocation, DomainError, Employee, HistoryCursor, HistoryFilter, Origin, Page, PageKey,
    PageRequest, Vehicle,
};
use crate::storage::{StoreError, StoreResult};

pub const ALLOCATION_COLUMNS: &str = "id, employee_id, vehicle_id, driver_id, allocation_date, purpose, create_time, update_time, version";

/// Turns a SQLite error into a storage error: failures of the environment
/// (busy, I/O, full disk) are worth retrying, anything else is a bug.
pub fn classify(context: &str, error: rusqlite::Error) -> StoreError {
    let transient = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::ReadOnly
        )
    );
    let error = without_sql(error);
    if transient {
        StoreError::unavailable(context, error)
    } else {
        StoreError::internal(context, error)
    }
}

/// The error without the statement SQLite refused, which its text would
/// repeat: a statement can be as long as a caller's filter made it, and
/// logs show what went wrong, not the query.
fn without_sql(error: rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqlInputError {
            error, msg, offset, ..
        } => rusqlite::Error::SqliteFailure(error, Some(format!("{msg} at offset {offset}"))),
        other => other,
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        classify("SQLite", error)
    }
}

// ---------------------------------------------------------------- encoding

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

// ------------------------------------------------------------------ writes

/// Decides and writes a change to a booking (see [`crate::domain::booking`]):
/// reads the facts, lets the domain decide, writes the decision and its
/// event.
pub fn write_booking(conn: &Connection, command: &BookingCommand) -> StoreResult<BookingDecision> {
    let mut facts = BookingFacts::default();
    match command.subject() {
        Subject::Booking(id) => facts.existing = find_allocation(conn, id)?,
        Subject::Key {
            request_id,
            live_after,
        } => {
            // Expired keys are purged on the way, so the table only ever
            // holds about one window's worth.
            conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
                .execute([millis(live_after)])?;
            let earlier: Option<(String, i64)> = conn
                .prepare_cached(
                    "SELECT allocation_id, fingerprint FROM idempotency_keys WHERE request_id = ?1",
                )?
                .query_row([request_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            if let Some((allocation_id, fingerprint)) = earlier {
                facts.existing = find_allocation(conn, &allocation_id)?;
                facts.earlier_key = Some((allocation_id, fingerprint as u64));
            }
        }
        Subject::Nothing => {}
    }
    if let Some(slot) = command.slot(&facts) {
        read_slot(conn, &slot, &mut facts)?;
    }
    let decision = booking::decide(command, facts)?;
    if let BookingDecision::Write(write) = &decision {
        apply_booking(conn, write)?;
    }
    Ok(decision)
}

/// Reads the facts of a slot a booking would take.
fn read_slot(conn: &Connection, slot: &Slot, facts: &mut BookingFacts) -> StoreResult<()> {
    facts.employee = super::fleet::find_employee(conn, &slot.employee_id)?;
    if let Some(vehicle) = super::fleet::find_vehicle(conn, &slot.vehicle_id, slot.date)? {
        let timeline = super::fleet::timeline(conn, &slot.vehicle_id)?;
        facts.vehicle = Some((vehicle, timeline));
    }
    facts.block = super::fleet::block_on(conn, &slot.vehicle_id, slot.date)?;
    let except = slot.except.as_deref().unwrap_or("");
    let holder = |sql: &str, value: &str| -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![value, days(slot.date), except], |row| row.get(0))
            .optional()?)
    };
    facts.vehicle_holder = holder(
        "SELECT id FROM allocations WHERE vehicle_id = ?1 AND allocation_date = ?2 AND id <> ?3",
        &slot.vehicle_id,
    )?;
    facts.employee_holder = holder(
        "SELECT id FROM allocations WHERE employee_id = ?1 AND allocation_date = ?2 AND id <> ?3",
        &slot.employee_id,
    )?;
    Ok(())
}

/// Writes a decided change: the booking, its day's total, its key and its
/// event.
fn apply_booking(conn: &Connection, write: &BookingWrite) -> StoreResult<()> {
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
            super::fleet::expect_one(changed, "updating an allocation")?;
            if after.date != before.date {
                count_bookings(conn, before.date, -1)?;
                count_bookings(conn, after.date, 1)?;
            }
        }
        (Some(before), None) => {
            let deleted = conn
                .prepare_cached("DELETE FROM allocations WHERE id = ?1 AND version = ?2")?
                .execute(params![before.id, before.version as i64])?;
            super::fleet::expect_one(deleted, "cancelling an allocation")?;
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
    super::events::append(conn, std::slice::from_ref(&write.event))
}

fn insert_allocation(conn: &Connection, a: &Allocation) -> StoreResult<()> {
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

/// Turns a unique-index violation into the booking rule it stands for, naming
/// the booking already holding the slot. Only seeding relies on it: the
/// booking write path decides from the slot's facts, and the indexes there
/// are a backstop.
fn explain_conflict(conn: &Connection, error: rusqlite::Error, wanted: &Allocation) -> StoreError {
    let message = match &error {
        rusqlite::Error::SqliteFailure(e, Some(message))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            message.as_str()
        }
        _ => return error.into(),
    };
    let holder = |column: &str, value: &str| -> StoreResult<String> {
        let sql = format!(
            "SELECT id FROM allocations WHERE {column} = ?1 AND allocation_date = ?2 AND id <> ?3"
        );
        Ok(conn
            .prepare_cached(&sql)?
            .query_row(params![value, days(wanted.date), wanted.id], |row| {
                row.get(0)
            })?)
    };
    // A driver drives one vehicle a day, so the (driver, date) index fires
    // for a vehicle booked twice as well, and may fire first.
    let conflict = if message.contains("allocations.vehicle_id")
        || message.contains("allocations.driver_id")
    {
        let (column, value) = if message.contains("allocations.vehicle_id") {
            ("vehicle_id", &wanted.vehicle_id)
        } else {
            ("driver_id", &wanted.driver_id)
        };
        holder(column, value).map(|allocation_id| DomainError::VehicleAlreadyBooked {
            vehicle_id: wanted.vehicle_id.clone(),
            date: wanted.date,
            allocation_id,
        })
    } else if message.contains("allocations.employee_id") {
        holder("employee_id", &wanted.employee_id).map(|allocation_id| {
            DomainError::EmployeeAlreadyBooked {
                employee_id: wanted.employee_id.clone(),
                date: wanted.date,
                allocation_id,
            }
        })
    } else {
        return error.into();
    };
    match conflict {
        Ok(rule) => rule.into(),
        Err(lookup) => lookup,
    }
}

/// Adds employees, and vehicles with drivers who have always driven them,
/// with their events (by `system:seed`).
pub fn insert_fleet(
    conn: &Connection,
    employees: &[Employee],
    vehicles: &[Vehicle],
) -> StoreResult<()> {
    for e in employees {
        super::fleet::put_employee(conn, e)?;
    }
    for v in vehicles {
        let driver = v.driver.as_ref().ok_or_else(|| {
            StoreError::internal(
                "loading the fleet",
                std::io::Error::other(format!("vehicle {} has no driver", v.id)),
            )
        })?;
        super::fleet::put_driver(conn, driver)?;
        super::fleet::put_vehicle(conn, v, Some(&driver.id))?;
        let since_ever = crate::domain::Assignment {
            driver_id: driver.id.clone(),
            start: crate::domain::fleet::timeline_start(),
            end: None,
        };
        super::fleet::replace_timeline(conn, &v.id, &[since_ever])?;
    }
    let events = seeded_fleet(employees, vehicles, &Origin::system("seed"));
    super::events::append(conn, &events)
}

/// Adds bookings as they are, counting them once per day, with their events
/// (by `system:seed`).
pub fn insert_allocations(conn: &Connection, allocations: &[Allocation]) -> StoreResult<()> {
    let mut per_day = std::collections::BTreeMap::new();
    for a in allocations {
        insert_allocation(conn, a)?;
        *per_day.entry(a.date).or_insert(0) += 1;
    }
    per_day
        .into_iter()
        .try_for_each(|(date, bookings)| count_bookings(conn, date, bookings))?;
    let events = seeded_bookings(allocations, &Origin::system("seed"));
    super::events::append(conn, &events)
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

/// Deletes everything.
pub fn reset(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "DELETE FROM idempotency_keys;
         DELETE FROM events;
         DELETE FROM event_subjects;
         DELETE FROM daily_bookings;
         DELETE FROM allocations;
         DELETE FROM vehicle_blocks;
         DELETE FROM driver_assignments;
         DELETE FROM vehicles;
         DELETE FROM drivers;
         DELETE FROM employees;",
    )?;
    Ok(())
}

// ------------------------------------------------------------------- reads

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

/// Whether nothing at all is stored.
/// A write that must reach the disk, to learn whether writes work again.
pub fn probe_write(conn: &Connection) -> StoreResult<()> {
    let now = Utc::now().timestamp_millis().to_be_bytes();
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES ('health_probe', ?1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute([now.as_slice()])?;
    Ok(())
}

/// The stored page-token key, storing `candidate` if there is none.
pub fn page_token_key(conn: &Connection, candidate: &PageKey) -> StoreResult<PageKey> {
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES ('page_token_key', ?1) ON CONFLICT (name) DO NOTHING",
    )?
    .execute([candidate.bytes().as_slice()])?;
    let stored: Vec<u8> = conn
        .prepare_cached("SELECT value FROM settings WHERE name = 'page_token_key'")?
        .query_row([], |row| row.get(0))?;
    PageKey::from_stored(&stored).ok_or_else(|| {
        StoreError::internal(
            "reading the page-token key",
            std::io::Error::other(format!("the stored key is {} bytes, not 32", stored.len())),
        )
    })
}

pub fn is_empty(conn: &Connection) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT NOT (EXISTS (SELECT 1 FROM employees)
                      OR EXISTS (SELECT 1 FROM vehicles)
                      OR EXISTS (SELECT 1 FROM allocations))",
        )?
        .query_row([], |row| row.get(0))?)
}
