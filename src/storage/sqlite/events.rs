//! The audit trail on SQLite: appended by the write functions in their own
//! savepoint, read in sequence order.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::queries::{millis, read_instant};
use crate::domain::{Actor, Event, EventFilter, EventKind, NewEvent, Page, PageRequest, Snapshot};
use crate::storage::{StoreError, StoreResult};

const EVENT_COLUMNS: &str =
    "sequence, event_time, kind, resource, actor_id, actor_roles, request_id, before, after";

fn snapshot_json(snapshot: &Option<Snapshot>) -> StoreResult<Option<String>> {
    snapshot
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::internal("encoding an event snapshot", e))
}

/// Appends `events` in order.
pub fn append(conn: &Connection, events: &[NewEvent]) -> StoreResult<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (event_time, kind, resource, actor_id, actor_roles, request_id,
                             employee_id, vehicle_id, prior_vehicle_id, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    for e in events {
        let vehicles = e.vehicle_ids();
        insert.execute(params![
            millis(e.time),
            e.kind.as_str(),
            e.resource,
            e.actor.id,
            e.actor.roles.join(","),
            e.request_id,
            e.employee_id(),
            vehicles.last(),
            (vehicles.len() > 1).then(|| vehicles[0]),
            snapshot_json(&e.before)?,
            snapshot_json(&e.after)?,
        ])?;
    }
    Ok(())
}

fn decode_error(
    idx: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(error))
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let snapshot = |idx: usize| -> rusqlite::Result<Option<Snapshot>> {
        row.get::<_, Option<String>>(idx)?
            .map(|json| serde_json::from_str(&json).map_err(|e| decode_error(idx, e)))
            .transpose()
    };
    let kind: String = row.get(2)?;
    let kind = EventKind::parse(&kind).ok_or_else(|| {
        decode_error(
            2,
            std::io::Error::other(format!("unknown event kind {kind:?}")),
        )
    })?;
    let roles: String = row.get(5)?;
    Ok(Event {
        sequence: row.get::<_, i64>(0)? as u64,
        event: NewEvent {
            time: read_instant(row, 1)?,
            kind,
            resource: row.get(3)?,
            actor: Actor {
                id: row.get(4)?,
                roles: roles
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            request_id: row.get(6)?,
            before: snapshot(7)?,
            after: snapshot(8)?,
        },
    })
}

/// The events matching `filter` after `page.after`, oldest first: up to
/// `page.size + 1` rows, the extra one telling whether more follow. The
/// total is not counted (a log has no useful one): it is 0.
pub fn list(
    conn: &Connection,
    filter: &EventFilter,
    page: &PageRequest<u64>,
) -> StoreResult<Page<Event>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    // Each `?` of a condition stands for the value bound with it.
    let mut bind = |condition: &str, bound: Vec<Value>| {
        let mut parts = condition.split('?');
        let mut numbered = parts.next().unwrap_or_default().to_owned();
        for (value, part) in bound.into_iter().zip(parts) {
            values.push(value);
            numbered.push_str(&format!("?{}{part}", values.len()));
        }
        conditions.push(numbered);
    };
    let text = |s: &String| Value::Text(s.clone());
    if let Some(after) = page.after {
        bind("sequence > ?", vec![Value::Integer(after as i64)]);
    }
    if let Some(resource) = &filter.resource {
        bind("resource = ?", vec![text(resource)]);
    }
    if let Some(id) = &filter.employee_id {
        bind("employee_id = ?", vec![text(id)]);
    }
    if let Some(id) = &filter.vehicle_id {
        // Each column by its own index (SQLite's OR optimisation).
        bind(
            "(vehicle_id = ? OR prior_vehicle_id = ?)",
            vec![text(id), text(id)],
        );
    }
    if let Some(actor) = &filter.actor {
        bind("actor_id = ?", vec![text(actor)]);
    }
    if !filter.kinds.is_empty() {
        let slots = vec!["?"; filter.kinds.len()].join(", ");
        let kinds = filter
            .kinds
            .iter()
            .map(|k| Value::Text(k.as_str().to_owned()));
        bind(&format!("kind IN ({slots})"), kinds.collect());
    }
    if let Some(start) = filter.start_time {
        bind("event_time >= ?", vec![Value::Integer(millis(start))]);
    }
    if let Some(end) = filter.end_time {
        bind("event_time < ?", vec![Value::Integer(millis(end))]);
    }
    values.push(Value::Integer(page.size as i64 + 1));
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events{clause} ORDER BY sequence LIMIT ?{}",
        values.len()
    );
    let rows = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(values), event_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Page::from_rows(rows, page.size, 0))
}

/// The sequence of the newest event ever appended (0 before the first),
/// pruned or not.
pub fn latest_sequence(conn: &Connection) -> StoreResult<u64> {
    let latest: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(latest.unwrap_or(0) as u64)
}

/// Deletes the events older than `before`, at most `limit` of them (so
/// that one pruning batch holds the writer only briefly); returns how many.
pub fn prune(conn: &Connection, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM events WHERE sequence IN
               (SELECT sequence FROM events WHERE event_time < ?1 ORDER BY event_time LIMIT ?2)",
        )?
        .execute(params![millis(before), limit as i64])?;
    Ok(deleted as u64)
}
