//! Every document the MongoDB backend sends: stored shapes, filters,
//! updates, sorts, pipelines and indexes. Pure functions, so each one is
//! unit-tested exactly without a server.
//!
//! Shapes: `allocation_date` is a BSON date at 00:00 UTC of the booked day,
//! so range filters and sorts use the indexes and the shell shows dates;
//! instants are BSON dates (milliseconds, the precision the service uses);
//! `version` is the etag, checked in the filter of every guarded write.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use mongodb::IndexModel;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::IndexOptions;

use crate::domain::allocation::IDEMPOTENCY_WINDOW;
use crate::domain::booking::SlotRule;
use crate::domain::{Allocation, HistoryCursor, HistoryFilter, IdempotencyKey};

mod events;
mod fleet;
pub use events::*;
pub use fleet::*;

/// Collection names.
pub const EMPLOYEES: &str = "employees";
pub const DRIVERS: &str = "drivers";
pub const VEHICLES: &str = "vehicles";
pub const ALLOCATIONS: &str = "allocations";
pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";
/// The service's own settings, one document each (the page-token key).
pub const SETTINGS: &str = "settings";
/// The `_id` of the page-token key in [`SETTINGS`].
pub const PAGE_TOKEN_KEY: &str = "page_token_key";

/// Names of the unique indexes that are booking rules; a duplicate-key error
/// names the one that fired.
pub const VEHICLE_DATE_UNIQUE: &str = "vehicle_date_unique";
pub const EMPLOYEE_DATE_UNIQUE: &str = "employee_date_unique";
/// A driver drives one vehicle per date, so carries one booking per date.
pub const DRIVER_DATE_UNIQUE: &str = "driver_date_unique";

const MILLIS_PER_DAY: i64 = 86_400_000;

/// A calendar date as stored: midnight UTC.
pub fn date(date: NaiveDate) -> bson::DateTime {
    bson::DateTime::from_millis(i64::from(date.to_epoch_days()) * MILLIS_PER_DAY)
}

/// An instant as stored.
pub fn instant(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

/// A stored document did not have the expected shape.
#[derive(Debug, thiserror::Error)]
#[error("malformed {collection} document: {problem}")]
pub struct Malformed {
    collection: &'static str,
    problem: String,
}

impl Malformed {
    /// A document of `collection` that is wrong in the way `problem` says.
    pub fn new(collection: &'static str, problem: impl ToString) -> Self {
        Self {
            collection,
            problem: problem.to_string(),
        }
    }
}

fn read_date(collection: &'static str, doc: &Document, key: &str) -> Result<NaiveDate, Malformed> {
    let at = doc
        .get_datetime(key)
        .map_err(|e| Malformed::new(collection, e))?;
    let days = at.timestamp_millis().div_euclid(MILLIS_PER_DAY);
    i32::try_from(days)
        .ok()
        .and_then(NaiveDate::from_epoch_days)
        .ok_or_else(|| Malformed::new(collection, format!("{key} out of range")))
}

fn read_instant(
    collection: &'static str,
    doc: &Document,
    key: &str,
) -> Result<DateTime<Utc>, Malformed> {
    let at = doc
        .get_datetime(key)
        .map_err(|e| Malformed::new(collection, e))?;
    DateTime::from_timestamp_millis(at.timestamp_millis())
        .ok_or_else(|| Malformed::new(collection, format!("{key} out of range")))
}

/// An integer, whichever BSON integer type it was written as (the shell
/// writes 32-bit ones).
fn read_int(collection: &'static str, doc: &Document, key: &str) -> Result<i64, Malformed> {
    match doc.get(key) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        other => Err(Malformed::new(
            collection,
            format!("{key}: expected an integer, got {other:?}"),
        )),
    }
}

fn read_str(collection: &'static str, doc: &Document, key: &str) -> Result<String, Malformed> {
    doc.get_str(key)
        .map(str::to_owned)
        .map_err(|e| Malformed::new(collection, format!("{key}: {e}")))
}

/// A booking as stored.
pub fn allocation_document(a: &Allocation) -> Document {
    doc! {
        "_id": &a.id,
        "employee_id": &a.employee_id,
        "vehicle_id": &a.vehicle_id,
        "driver_id": &a.driver_id,
        "allocation_date": date(a.date),
        "purpose": &a.purpose,
        "create_time": instant(a.create_time),
        "update_time": instant(a.update_time),
        "version": a.version as i64,
    }
}

/// A booking from its stored document.
pub fn allocation_from(doc: &Document) -> Result<Allocation, Malformed> {
    const C: &str = ALLOCATIONS;
    let version = read_int(C, doc, "version")?;
    Ok(Allocation {
        id: read_str(C, doc, "_id")?,
        employee_id: read_str(C, doc, "employee_id")?,
        vehicle_id: read_str(C, doc, "vehicle_id")?,
        driver_id: read_str(C, doc, "driver_id")?,
        date: read_date(C, doc, "allocation_date")?,
        purpose: read_str(C, doc, "purpose")?,
        create_time: read_instant(C, doc, "create_time")?,
        update_time: read_instant(C, doc, "update_time")?,
        version: u64::try_from(version).map_err(|e| Malformed::new(C, e))?,
    })
}

/// A stored idempotency key: which booking a request made, and a digest of
/// the request. `created_at` drives the TTL index.
pub fn idempotency_document(
    key: &IdempotencyKey,
    allocation_id: &str,
    now: DateTime<Utc>,
) -> Document {
    doc! {
        "_id": &key.request_id,
        "allocation_id": allocation_id,
        "fingerprint": key.fingerprint as i64,
        "created_at": instant(now),
    }
}

/// What a stored idempotency key says: the booking made, and the digest of
/// the request that made it.
pub fn idempotency_from(doc: &Document) -> Result<(String, u64), Malformed> {
    const C: &str = IDEMPOTENCY_KEYS;
    let fingerprint = read_int(C, doc, "fingerprint")?;
    Ok((read_str(C, doc, "allocation_id")?, fingerprint as u64))
}

/// The `_id` of any document of `collection`.
pub fn id_of(collection: &'static str, doc: &Document) -> Result<String, Malformed> {
    read_str(collection, doc, "_id")
}

/// The key still within its window: older ones are treated as gone even
/// before the TTL monitor (which runs once a minute) deletes them.
pub fn live_idempotency_key(request_id: &str, now: DateTime<Utc>) -> Document {
    idempotency_key_since(request_id, IdempotencyKey::expired_before(now))
}

/// The key if it was stored at `since` or later.
pub fn idempotency_key_since(request_id: &str, since: DateTime<Utc>) -> Document {
    doc! {
        "_id": request_id,
        "created_at": { "$gte": instant(since) },
    }
}

/// The booking holding `field` (`vehicle_id` or `employee_id`) = `value` on
/// `day`, other than `except`.
pub fn slot_taken(field: &str, value: &str, day: NaiveDate, except: Option<&str>) -> Document {
    let mut filter = doc! { field: value, "allocation_date": date(day) };
    if let Some(except) = except {
        filter.insert("_id", doc! { "$ne": except });
    }
    filter
}

/// The upsert that stores `candidate` as the page-token key unless one is
/// stored: it never replaces a key.
pub fn page_key_upsert(candidate: &[u8]) -> Document {
    doc! {
        "$setOnInsert": {
            "value": bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: candidate.to_vec(),
            },
        },
    }
}

/// The stored page-token key's bytes.
pub fn page_key_from(doc: &Document) -> Result<Vec<u8>, Malformed> {
    doc.get_binary_generic("value")
        .cloned()
        .map_err(|e| Malformed::new(SETTINGS, e))
}

/// A document by id.
pub fn by_id(id: &str) -> Document {
    doc! { "_id": id }
}

/// One version of a booking: the filter of every guarded write, so that
/// of two concurrent writers only one can match.
pub fn version_guard(id: &str, version: u64) -> Document {
    doc! { "_id": id, "version": version as i64 }
}

/// The update that turns a booking into `after` (the fields an update can
/// change, its time and its version).
pub fn allocation_update(after: &Allocation) -> Document {
    doc! {
        "$set": {
            "vehicle_id": &after.vehicle_id,
            "driver_id": &after.driver_id,
            "allocation_date": date(after.date),
            "purpose": &after.purpose,
            "update_time": instant(after.update_time),
            "version": after.version as i64,
        }
    }
}

/// The history report's filter, continuing after `after`.
///
/// The range ends at [`HistoryFilter::last_date`], so the index range
/// narrows; the `$or` only breaks ties within the cursor's date.
pub fn history_filter(filter: &HistoryFilter, after: Option<&HistoryCursor>) -> Document {
    let mut query = Document::new();
    for (field, value) in [
        ("employee_id", &filter.employee_id),
        ("vehicle_id", &filter.vehicle_id),
        ("driver_id", &filter.driver_id),
    ] {
        if let Some(value) = value {
            query.insert(field, value);
        }
    }
    let mut range = Document::new();
    if let Some(start) = filter.start_date {
        range.insert("$gte", date(start));
    }
    if let Some(upper) = filter.last_date(after) {
        range.insert("$lte", date(upper));
    }
    if !range.is_empty() {
        query.insert("allocation_date", range);
    }
    if let Some(cursor) = after {
        query.insert(
            "$or",
            vec![
                Bson::Document(doc! { "allocation_date": { "$lt": date(cursor.date) } }),
                Bson::Document(
                    doc! { "allocation_date": date(cursor.date), "_id": { "$lt": &cursor.id } },
                ),
            ],
        );
    }
    query
}

/// History order: newest date first, then id descending.
pub fn history_sort() -> Document {
    doc! { "allocation_date": -1, "_id": -1 }
}

/// Lists in id order continue after an id.
pub fn after_id(after: Option<&str>) -> Document {
    match after {
        Some(id) => doc! { "_id": { "$gt": id } },
        None => Document::new(),
    }
}

/// Id order.
pub fn id_sort() -> Document {
    doc! { "_id": 1 }
}

/// Bookings on `day`; as each books one vehicle, their number is how many
/// vehicles are taken that day.
pub fn bookings_on(day: NaiveDate) -> Document {
    doc! { "allocation_date": date(day) }
}

/// The booking, other than `wanted` itself, that holds the slot `wanted`
/// would take under `rule`.
pub fn slot_holder(rule: SlotRule, wanted: &Allocation) -> Document {
    let (field, value) = rule.field(wanted);
    let mut holder = Document::new();
    holder.insert(field, value);
    holder.insert("allocation_date", date(wanted.date));
    holder.insert("_id", doc! { "$ne": &wanted.id });
    holder
}

fn index(keys: Document, name: &str, unique: bool) -> IndexModel {
    let options = IndexOptions::builder()
        .name(name.to_owned())
        .unique(unique.then_some(true))
        .build();
    IndexModel::builder().keys(keys).options(options).build()
}

/// Every index, per collection; created at startup, where creating an
/// index that already exists with the same definition does nothing.
pub fn indexes() -> Vec<(&'static str, Vec<IndexModel>)> {
    let ttl = IndexOptions::builder()
        .name("expire_after_window".to_owned())
        .expire_after(Duration::from_secs(IDEMPOTENCY_WINDOW.num_seconds() as u64))
        .build();
    vec![
        (
            ALLOCATIONS,
            vec![
                // The booking rules.
                index(
                    doc! { "vehicle_id": 1, "allocation_date": 1 },
                    VEHICLE_DATE_UNIQUE,
                    true,
                ),
                index(
                    doc! { "employee_id": 1, "allocation_date": 1 },
                    EMPLOYEE_DATE_UNIQUE,
                    true,
                ),
                index(
                    doc! { "driver_id": 1, "allocation_date": 1 },
                    DRIVER_DATE_UNIQUE,
                    true,
                ),
                // One per history filter, each in the report's sort order.
                index(
                    doc! { "employee_id": 1, "allocation_date": -1, "_id": -1 },
                    "history_by_employee",
                    false,
                ),
                index(
                    doc! { "vehicle_id": 1, "allocation_date": -1, "_id": -1 },
                    "history_by_vehicle",
                    false,
                ),
                index(
                    doc! { "driver_id": 1, "allocation_date": -1, "_id": -1 },
                    "history_by_driver",
                    false,
                ),
                index(
                    doc! { "allocation_date": -1, "_id": -1 },
                    "history_by_date",
                    false,
                ),
            ],
        ),
        (
            EMPLOYEES,
            vec![
                index(doc! { "email": 1 }, "email_unique", true),
                index(doc! { "department": 1, "_id": 1 }, "by_department", false),
                index(doc! { "active": 1, "_id": 1 }, "by_active", false),
            ],
        ),
        (
            DRIVERS,
            vec![
                index(doc! { "license_number": 1 }, "license_number_unique", true),
                index(doc! { "active": 1, "_id": 1 }, "by_active", false),
            ],
        ),
        (
            VEHICLES,
            vec![
                index(doc! { "registration": 1 }, "registration_unique", true),
                index(
                    doc! { "assignments.driver_id": 1 },
                    "by_assigned_driver",
                    false,
                ),
                index(doc! { "driver_id": 1 }, "by_driver", false),
            ],
        ),
        (
            VEHICLE_BLOCKS,
            vec![index(
                doc! { "vehicle_id": 1, "end_date": 1 },
                "by_vehicle",
                false,
            )],
        ),
        (EVENTS, event_indexes()),
        (
            IDEMPOTENCY_KEYS,
            vec![
                IndexModel::builder()
                    .keys(doc! { "created_at": 1 })
                    .options(ttl)
                    .build(),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests;
