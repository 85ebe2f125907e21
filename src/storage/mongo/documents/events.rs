//! The audit trail's documents: one per event, `_id` its sequence.
//!
//! Sequences come from a counter in [`SETTINGS`], taken outside the
//! writing transaction as its last step, so that writers do not meet in
//! write conflicts on the counter. A sequence can therefore be taken by a
//! transaction that has not committed yet, or never will: readers read up
//! to the watermark, below which every sequence holds an event or a void
//! (a sequence given up). See `docs/architecture.md`, "Event sequences on
//! MongoDB".

use chrono::{DateTime, Utc};
use mongodb::IndexModel;
use mongodb::bson::{self, Bson, Document, doc};

use super::{Malformed, SETTINGS, index, instant, read_instant, read_int, read_str};
use crate::domain::admin::Erasure;
use crate::domain::{Actor, Event, EventFilter, EventKind, NewEvent, Snapshot};

/// The events collection.
pub const EVENTS: &str = "events";
/// The `_id` of the event sequence counter in [`SETTINGS`].
pub const EVENT_SEQUENCE: &str = "event_sequence";

/// The `_id` of the watermark in [`SETTINGS`]: a sequence at or below
/// which every sequence is an event or a void (a lower bound, kept so that
/// a restarted process need not scan the whole log).
pub const EVENT_WATERMARK: &str = "event_watermark";

/// The update that takes `count` sequences from the counter (creating it at
/// 0 first); the counter's new value is the last one taken.
pub fn take_sequences(count: usize) -> Document {
    doc! { "$inc": { "value": count as i64 } }
}

/// The counter's value, from the document the update returned.
pub fn sequence_from(doc: &Document) -> Result<u64, Malformed> {
    read_int(SETTINGS, doc, "value").map(|v| v as u64)
}

fn snapshot_document(snapshot: &Option<Snapshot>) -> Result<Bson, Malformed> {
    match snapshot {
        None => Ok(Bson::Null),
        Some(s) => bson::to_bson(s).map_err(|e| Malformed::new(EVENTS, e)),
    }
}

/// Raises the stored watermark to `value` (never lowers it).
pub fn raise_watermark(value: u64) -> Document {
    doc! { "$max": { "value": value as i64 } }
}

/// Stores `value` as the watermark unless one is stored already.
pub fn first_watermark(value: u64) -> Document {
    doc! { "$setOnInsert": { "value": value as i64 } }
}

/// A sequence that was taken and given up (its transaction aborted, or its
/// process died): it holds no event, so readers may pass it.
pub fn void_document(sequence: u64, at: DateTime<Utc>) -> Document {
    doc! { "_id": sequence as i64, "void": true, "time": instant(at) }
}

/// The sequences at or above `from`, in order, for finding the watermark:
/// only their ids, on the `_id` index.
pub fn sequences_from(from: u64) -> Document {
    doc! { "_id": { "$gte": i64::try_from(from).unwrap_or(i64::MAX) } }
}

/// The sequence of an event or a void.
pub fn sequence_of(doc: &Document) -> Result<u64, Malformed> {
    read_int(EVENTS, doc, "_id").map(|v| v as u64)
}

/// The highest sequence reached from `watermark` through the ascending
/// `sequences` without a gap (sequences at or below the watermark are
/// passed over).
pub fn contiguous(watermark: u64, sequences: impl IntoIterator<Item = u64>) -> u64 {
    let mut reached = watermark;
    for sequence in sequences {
        if sequence <= reached {
            continue;
        }
        if sequence != reached + 1 {
            break;
        }
        reached = sequence;
    }
    reached
}

/// An event as stored. `employee_id` and `vehicle_ids` are copied out of the
/// snapshots for the filters.
pub fn event_document(sequence: u64, e: &NewEvent) -> Result<Document, Malformed> {
    Ok(doc! {
        "_id": sequence as i64,
        "time": instant(e.time),
        "kind": e.kind.as_str(),
        "resource": &e.resource,
        "actor": { "id": &e.actor.id, "roles": &e.actor.roles },
        "request_id": &e.request_id,
        "employee_id": e.employee_id().map_or(Bson::Null, |id| Bson::String(id.to_owned())),
        "vehicle_ids": e.vehicle_ids(),
        "before": snapshot_document(&e.before)?,
        "after": snapshot_document(&e.after)?,
    })
}

/// A stored event.
pub fn event_from(doc: &Document) -> Result<Event, Malformed> {
    const C: &str = EVENTS;
    let kind = read_str(C, doc, "kind")?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| Malformed::new(C, format!("unknown event kind {kind:?}")))?;
    let actor = doc
        .get_document("actor")
        .map_err(|e| Malformed::new(C, e))?;
    let roles = actor
        .get_array("roles")
        .map_err(|e| Malformed::new(C, e))?
        .iter()
        .map(|r| r.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Malformed::new(C, "an actor role is not a string"))?;
    let snapshot = |key: &str| -> Result<Option<Snapshot>, Malformed> {
        match doc.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(value) => bson::from_bson(value.clone())
                .map(Some)
                .map_err(|e| Malformed::new(C, e)),
        }
    };
    Ok(Event {
        sequence: read_int(C, doc, "_id")? as u64,
        event: NewEvent {
            kind,
            resource: read_str(C, doc, "resource")?,
            time: read_instant(C, doc, "time")?,
            actor: Actor {
                id: read_str(C, actor, "id")?,
                roles,
            },
            request_id: read_str(C, doc, "request_id")?,
            before: snapshot("before")?,
            after: snapshot("after")?,
        },
    })
}

/// The events matching `filter` with a sequence above `after` and at or
/// below the watermark `upto`; voids have no kind, so none match.
pub fn event_filter(filter: &EventFilter, after: Option<u64>, upto: u64) -> Document {
    let mut query = Document::new();
    let mut sequence = Document::new();
    if let Some(after) = after {
        // Past every sequence a store holds: none, not a negative number.
        sequence.insert("$gt", i64::try_from(after).unwrap_or(i64::MAX));
    }
    sequence.insert("$lte", i64::try_from(upto).unwrap_or(i64::MAX));
    query.insert("_id", sequence);
    if let Some(resource) = &filter.resource {
        query.insert("resource", resource);
    }
    if let Some(id) = &filter.employee_id {
        query.insert("employee_id", id);
    }
    if let Some(id) = &filter.vehicle_id {
        query.insert("vehicle_ids", id);
    }
    if let Some(actor) = &filter.actor {
        query.insert("actor.id", actor);
    }
    if filter.kinds.is_empty() {
        query.insert("kind", doc! { "$exists": true });
    } else {
        let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
        query.insert("kind", doc! { "$in": kinds });
    }
    let mut time = Document::new();
    if let Some(start) = filter.start_time {
        time.insert("$gte", instant(start));
    }
    if let Some(end) = filter.end_time {
        time.insert("$lt", instant(end));
    }
    if !time.is_empty() {
        query.insert("time", time);
    }
    query
}

/// The filters and updates that write the pseudonym of `erasure` over the
/// name and e-mail in the snapshots of the employee's own events: one pair
/// per snapshot field, each matching only events where that snapshot is an
/// employee (a null one has no fields to set).
pub fn erase_snapshots(erasure: &Erasure) -> Vec<(Document, Document)> {
    ["before", "after"]
        .into_iter()
        .map(|field| {
            let employee = format!("{field}.employee");
            (
                doc! {
                    "resource": erasure.resource(),
                    &employee: { "$type": "object" },
                },
                doc! { "$set": {
                    format!("{employee}.name"): &erasure.name,
                    format!("{employee}.email"): &erasure.email,
                } },
            )
        })
        .collect()
}

/// Oldest first.
pub fn sequence_sort() -> Document {
    doc! { "_id": 1 }
}

/// The events (and voids) older than `before` and at or below the
/// watermark, for pruning: a sequence above it may be a gap still to fill.
pub fn events_before(before: DateTime<Utc>, watermark: u64) -> Document {
    doc! {
        "time": { "$lt": instant(before) },
        "_id": { "$lte": i64::try_from(watermark).unwrap_or(i64::MAX) },
    }
}

/// The change stream's pipeline: inserted events only (pruning deletes),
/// without the documents (only the change's cluster time is used).
pub fn inserted_events() -> Vec<Document> {
    vec![
        doc! { "$match": { "operationType": "insert" } },
        doc! { "$project": { "fullDocument": 0 } },
    ]
}

/// The events' indexes: one per filter, each in sequence order.
pub fn event_indexes() -> Vec<IndexModel> {
    vec![
        index(doc! { "resource": 1, "_id": 1 }, "by_resource", false),
        index(doc! { "employee_id": 1, "_id": 1 }, "by_employee", false),
        index(doc! { "vehicle_ids": 1, "_id": 1 }, "by_vehicle", false),
        index(doc! { "time": 1 }, "by_time", false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Allocation, Origin};
    use chrono::NaiveDate;

    fn moved() -> NewEvent {
        let at = DateTime::from_timestamp_millis(1_764_806_400_123).unwrap();
        let before = Allocation {
            id: "a1".into(),
            employee_id: "e1".into(),
            vehicle_id: "v1".into(),
            driver_id: "d1".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 5).unwrap(),
            purpose: "site visit".into(),
            create_time: at,
            update_time: at,
            version: 1,
        };
        let after = Allocation {
            vehicle_id: "v2".into(),
            driver_id: "d2".into(),
            version: 2,
            ..before.clone()
        };
        let origin = Origin::new(
            Actor {
                id: "agent".into(),
                roles: vec!["booking_agent".into()],
            },
            "req-1",
        );
        NewEvent::allocation(Some(&before), Some(&after), at, &origin)
    }

    #[test]
    fn an_event_is_stored_with_its_filter_fields_and_read_back_whole() {
        let event = moved();
        let stored = event_document(7, &event).unwrap();
        assert_eq!(stored.get_i64("_id").unwrap(), 7);
        assert_eq!(stored.get_str("kind").unwrap(), "allocation.updated");
        assert_eq!(stored.get_str("resource").unwrap(), "allocations/a1");
        assert_eq!(stored.get_str("employee_id").unwrap(), "e1");
        assert_eq!(
            stored.get_array("vehicle_ids").unwrap(),
            &vec![Bson::from("v1"), Bson::from("v2")]
        );
        assert_eq!(
            stored.get_document("actor").unwrap(),
            &doc! { "id": "agent", "roles": ["booking_agent"] }
        );
        assert_eq!(
            stored.get_datetime("time").unwrap().timestamp_millis(),
            1_764_806_400_123
        );
        assert_eq!(event_from(&stored).unwrap(), Event { sequence: 7, event });
    }

    #[test]
    fn a_cancel_stores_no_after() {
        let mut event = moved();
        event.after = None;
        event.kind = EventKind::AllocationCancelled;
        let stored = event_document(8, &event).unwrap();
        assert_eq!(stored.get("after"), Some(&Bson::Null));
        assert_eq!(event_from(&stored).unwrap().event, event);
    }

    #[test]
    fn the_filter_names_each_field_given() {
        assert_eq!(
            event_filter(&EventFilter::default(), None, 50),
            doc! { "_id": { "$lte": 50_i64 }, "kind": { "$exists": true } },
            "a void (no kind) is never listed, nor a sequence past the watermark"
        );
        let start = DateTime::from_timestamp_millis(1_000).unwrap();
        let end = DateTime::from_timestamp_millis(2_000).unwrap();
        let filter = EventFilter {
            resource: Some("allocations/a1".into()),
            employee_id: Some("e1".into()),
            vehicle_id: Some("v2".into()),
            actor: Some("agent".into()),
            kinds: vec![EventKind::AllocationCreated, EventKind::AllocationCancelled],
            start_time: Some(start),
            end_time: Some(end),
        };
        assert_eq!(
            event_filter(&filter, Some(41), 50),
            doc! {
                "_id": { "$gt": 41_i64, "$lte": 50_i64 },
                "resource": "allocations/a1",
                "employee_id": "e1",
                "vehicle_ids": "v2",
                "actor.id": "agent",
                "kind": { "$in": ["allocation.created", "allocation.cancelled"] },
                "time": {
                    "$gte": bson::DateTime::from_millis(1_000),
                    "$lt": bson::DateTime::from_millis(2_000),
                },
            }
        );
    }

    #[test]
    fn a_position_past_i64_is_past_every_event_not_before_them() {
        for after in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(
                event_filter(&EventFilter::default(), Some(after), u64::MAX),
                doc! {
                    "_id": { "$gt": i64::MAX, "$lte": i64::MAX },
                    "kind": { "$exists": true },
                }
            );
        }
    }

    #[test]
    fn pruning_and_the_change_stream_name_their_documents() {
        let at = DateTime::from_timestamp_millis(5_000).unwrap();
        assert_eq!(
            events_before(at, 90),
            doc! {
                "time": { "$lt": bson::DateTime::from_millis(5_000) },
                "_id": { "$lte": 90_i64 },
            }
        );
        assert_eq!(
            inserted_events(),
            vec![
                doc! { "$match": { "operationType": "insert" } },
                doc! { "$project": { "fullDocument": 0 } },
            ]
        );
        assert_eq!(sequence_sort(), doc! { "_id": 1 });
    }

    #[test]
    fn an_erasure_sets_the_pseudonym_in_both_snapshots_of_the_employees_events() {
        let erasure = Erasure {
            employee_id: "e1".into(),
            name: "erased-x".into(),
            email: "erased-x@erased.invalid".into(),
        };
        assert_eq!(
            erase_snapshots(&erasure),
            vec![
                (
                    doc! {
                        "resource": "employees/e1",
                        "before.employee": { "$type": "object" },
                    },
                    doc! { "$set": {
                        "before.employee.name": "erased-x",
                        "before.employee.email": "erased-x@erased.invalid",
                    } },
                ),
                (
                    doc! {
                        "resource": "employees/e1",
                        "after.employee": { "$type": "object" },
                    },
                    doc! { "$set": {
                        "after.employee.name": "erased-x",
                        "after.employee.email": "erased-x@erased.invalid",
                    } },
                ),
            ]
        );
    }

    #[test]
    fn an_employee_snapshot_is_stored_under_the_paths_the_erasure_sets() {
        let at = DateTime::from_timestamp_millis(1_000).unwrap();
        let employee = crate::domain::Employee {
            id: "e1".into(),
            name: "Jane".into(),
            email: "jane@example.com".into(),
            department: "Sales".into(),
            active: true,
            create_time: at,
            update_time: at,
            version: 1,
        };
        let origin = Origin::new(Actor::anonymous(), "r");
        let event = NewEvent::new(
            EventKind::EmployeeCreated,
            None,
            Some(Snapshot::Employee(employee)),
            at,
            &origin,
        );
        let stored = event_document(1, &event).unwrap();
        let after = stored.get_document("after").unwrap();
        let inner = after.get_document("employee").unwrap();
        assert_eq!(inner.get_str("name").unwrap(), "Jane");
        assert_eq!(inner.get_str("email").unwrap(), "jane@example.com");
        assert_eq!(stored.get_str("resource").unwrap(), "employees/e1");
    }

    #[test]
    fn sequences_are_taken_by_incrementing_the_counter() {
        assert_eq!(take_sequences(3), doc! { "$inc": { "value": 3_i64 } });
        assert_eq!(
            sequence_from(&doc! { "_id": EVENT_SEQUENCE, "value": 9_i64 }).unwrap(),
            9
        );
    }

    #[test]
    fn the_watermark_stops_at_the_first_gap() {
        assert_eq!(contiguous(4, [5, 6, 7]), 7);
        assert_eq!(contiguous(4, [5, 7, 8]), 5, "6 may still commit");
        assert_eq!(contiguous(4, [6, 7]), 4);
        assert_eq!(contiguous(4, []), 4);
        assert_eq!(contiguous(4, [3, 4, 5]), 5, "at or below it: passed over");
        assert_eq!(contiguous(0, [1, 2]), 2);
    }

    #[test]
    fn a_given_up_sequence_is_stored_as_a_void_and_the_watermark_only_rises() {
        let at = DateTime::from_timestamp_millis(9_000).unwrap();
        let void = void_document(12, at);
        assert_eq!(
            void,
            doc! { "_id": 12_i64, "void": true, "time": bson::DateTime::from_millis(9_000) }
        );
        assert_eq!(sequence_of(&void).unwrap(), 12);
        assert!(event_from(&void).is_err(), "a void is not an event");
        assert_eq!(raise_watermark(12), doc! { "$max": { "value": 12_i64 } });
        assert_eq!(
            first_watermark(12),
            doc! { "$setOnInsert": { "value": 12_i64 } }
        );
        assert_eq!(sequences_from(13), doc! { "_id": { "$gte": 13_i64 } });
    }
}
