//! The audit trail's documents: one per event, `_id` its sequence, handed
//! out by a counter in [`SETTINGS`] that every write transaction increments
//! (two writers meet in a write conflict there, so sequences commit in
//! order and an aborted transaction gives its sequence back).

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

/// The events matching `filter` with a sequence above `after`.
pub fn event_filter(filter: &EventFilter, after: Option<u64>) -> Document {
    let mut query = Document::new();
    if let Some(after) = after {
        // Past every sequence a store holds: none, not a negative number.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        query.insert("_id", doc! { "$gt": after });
    }
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
    if !filter.kinds.is_empty() {
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

/// The events older than `before`, for pruning.
pub fn events_before(before: DateTime<Utc>) -> Document {
    doc! { "time": { "$lt": instant(before) } }
}

/// The change stream's pipeline: inserted events only (pruning deletes).
pub fn inserted_events() -> Vec<Document> {
    vec![doc! { "$match": { "operationType": "insert" } }]
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
        assert_eq!(event_filter(&EventFilter::default(), None), doc! {});
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
            event_filter(&filter, Some(41)),
            doc! {
                "_id": { "$gt": 41_i64 },
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
                event_filter(&EventFilter::default(), Some(after)),
                doc! { "_id": { "$gt": i64::MAX } }
            );
        }
    }

    #[test]
    fn pruning_and_the_change_stream_name_their_documents() {
        let at = DateTime::from_timestamp_millis(5_000).unwrap();
        assert_eq!(
            events_before(at),
            doc! { "time": { "$lt": bson::DateTime::from_millis(5_000) } }
        );
        assert_eq!(
            inserted_events(),
            vec![doc! { "$match": { "operationType": "insert" } }]
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
}
