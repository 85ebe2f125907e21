//! The audit trail on SQLite: appended by the write functions in their own
//! savepoint, read in sequence order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::SqliteStore;
use super::rows::{millis, read_instant};
use crate::domain::admin::Erasure;
use crate::domain::{Actor, Event, EventFilter, EventKind, NewEvent, Page, PageRequest, Snapshot};
use crate::storage::EventLog;
use crate::storage::{StoreError, StoreResult};

const EVENT_COLUMNS: &str =
    "sequence, event_time, kind, resource, actor_id, actor_roles, request_id, before, after";

/// The same, from `events e` joined to `event_subjects s`.
const INDEXED_EVENT_COLUMNS: &str = "e.sequence, e.event_time, e.kind, e.resource, e.actor_id, \
     e.actor_roles, e.request_id, e.before, e.after";

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

/// Writes the pseudonym of `erasure` over the name and e-mail in the
/// snapshots of the employee's own events (found by resource, an indexed
/// column); `json_replace` changes only paths that exist, so a snapshot of
/// another kind could not gain them.
pub fn erase(conn: &Connection, erasure: &Erasure) -> StoreResult<()> {
    for column in ["before", "after"] {
        conn.prepare_cached(&format!(
            "UPDATE events SET {column} = json_replace({column},
                 '$.employee.name', ?2, '$.employee.email', ?3)
              WHERE resource = ?1 AND {column} IS NOT NULL"
        ))?
        .execute(params![erasure.resource(), erasure.name, erasure.email])?;
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

/// Conditions with `?` placeholders, numbered as their values are bound.
#[derive(Default)]
struct Conditions {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Conditions {
    /// Adds `condition`; each of its `?` stands for the value bound with it.
    fn bind(&mut self, condition: &str, bound: Vec<Value>) {
        let mut parts = condition.split('?');
        let mut numbered = parts.next().unwrap_or_default().to_owned();
        for (value, part) in bound.into_iter().zip(parts) {
            self.values.push(value);
            numbered.push_str(&format!("?{}{part}", self.values.len()));
        }
        self.clauses.push(numbered);
    }

    /// The conditions joined by AND, after `prefix` (" WHERE ", " AND ").
    fn joined(&self, prefix: &str) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("{prefix}{}", self.clauses.join(" AND "))
        }
    }

    /// Runs `SELECT ... {sql} LIMIT limit` with these values.
    fn rows(mut self, conn: &Connection, sql: &str, limit: usize) -> StoreResult<Vec<Event>> {
        self.values.push(Value::Integer(limit as i64));
        let sql = format!("{sql} LIMIT ?{}", self.values.len());
        Ok(conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(self.values), event_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// The conditions on an event's own columns: all but its sequence and
/// subjects.
fn column_conditions(filter: &EventFilter) -> Conditions {
    let mut conditions = Conditions::default();
    if let Some(resource) = &filter.resource {
        conditions.bind("resource = ?", vec![text(resource)]);
    }
    if let Some(actor) = &filter.actor {
        conditions.bind("actor_id = ?", vec![text(actor)]);
    }
    if !filter.kinds.is_empty() {
        let slots = vec!["?"; filter.kinds.len()].join(", ");
        let kinds = filter.kinds.iter().map(|k| text(k.as_str()));
        conditions.bind(&format!("kind IN ({slots})"), kinds.collect());
    }
    if let Some(start) = filter.start_time {
        conditions.bind("event_time >= ?", vec![Value::Integer(millis(start))]);
    }
    if let Some(end) = filter.end_time {
        conditions.bind("event_time < ?", vec![Value::Integer(millis(end))]);
    }
    conditions
}

fn bind_employee(conditions: &mut Conditions, id: &str) {
    conditions.bind("employee_id = ?", vec![text(id)]);
}

fn bind_vehicle(conditions: &mut Conditions, id: &str) {
    conditions.bind(
        "(vehicle_id = ? OR prior_vehicle_id = ?)",
        vec![text(id), text(id)],
    );
}

/// The `event_subjects` key of an employee and of a vehicle.
fn employee_subject(id: &str) -> String {
    format!("e:{id}")
}

fn vehicle_subject(id: &str) -> String {
    format!("v:{id}")
}

/// The events matching `filter` after `page.after`, oldest first: up to
/// `page.size + 1` rows, the extra one telling whether more follow. The
/// total is not counted (a log has no useful one): it is 0.
///
/// With an employee or a vehicle, the events up to `indexed_upto` are found
/// through `event_subjects`, and the few after it by their columns; both in
/// the read pool's one transaction per read, so that the two parts meet
/// exactly.
pub fn list(
    conn: &Connection,
    filter: &EventFilter,
    page: &PageRequest<u64>,
) -> StoreResult<Page<Event>> {
    let wanted = page.size + 1;
    // Past every sequence a store holds: none, not a negative number.
    let after = i64::try_from(page.after.unwrap_or(0)).unwrap_or(i64::MAX);
    let subject = filter
        .employee_id
        .as_deref()
        .map(employee_subject)
        .or_else(|| filter.vehicle_id.as_deref().map(vehicle_subject));
    let Some(subject) = subject else {
        let mut conditions = column_conditions(filter);
        conditions.bind("sequence > ?", vec![Value::Integer(after)]);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{} ORDER BY sequence",
            conditions.joined(" WHERE ")
        );
        let rows = conditions.rows(conn, &sql, wanted)?;
        return Ok(Page::from_rows(rows, page.size, 0));
    };
    let upto = indexed_upto(conn)? as i64;
    let mut rows = Vec::new();
    if after < upto {
        let mut conditions = column_conditions(filter);
        conditions.bind(
            "s.subject = ? AND s.sequence > ? AND s.sequence <= ?",
            vec![
                Value::Text(subject),
                Value::Integer(after),
                Value::Integer(upto),
            ],
        );
        // With both, the employee drives and the vehicle filters.
        if let (Some(_), Some(vehicle)) = (&filter.employee_id, &filter.vehicle_id) {
            bind_vehicle(&mut conditions, vehicle);
        }
        let sql = format!(
            "SELECT {INDEXED_EVENT_COLUMNS} FROM event_subjects s
               JOIN events e ON e.sequence = s.sequence{}
             ORDER BY s.sequence",
            conditions.joined(" WHERE ")
        );
        rows = conditions.rows(conn, &sql, wanted)?;
    }
    if rows.len() < wanted {
        let mut conditions = column_conditions(filter);
        conditions.bind("sequence > ?", vec![Value::Integer(after.max(upto))]);
        if let Some(employee) = &filter.employee_id {
            bind_employee(&mut conditions, employee);
        }
        if let Some(vehicle) = &filter.vehicle_id {
            bind_vehicle(&mut conditions, vehicle);
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events{} ORDER BY sequence",
            conditions.joined(" WHERE ")
        );
        let tail = conditions.rows(conn, &sql, wanted - rows.len())?;
        rows.extend(tail);
    }
    Ok(Page::from_rows(rows, page.size, 0))
}

/// The newest sequence whose subjects are in `event_subjects`.
pub fn indexed_upto(conn: &Connection) -> StoreResult<u64> {
    let upto: i64 = conn
        .prepare_cached("SELECT indexed_upto FROM event_index WHERE id = 1")?
        .query_row([], |row| row.get(0))?;
    Ok(upto as u64)
}

/// Events appended after the last indexing before the writer indexes
/// their subjects: the most a subject query scans by column.
pub const SUBJECT_BATCH: u64 = 4096;

/// Adds the subjects of the events after `indexed_upto`, `most` of them at
/// most, to `event_subjects`, sorted so that each subject's last page is
/// written once, and moves `indexed_upto` past them; returns it, and
/// whether that is the newest event.
pub fn index_subjects(conn: &Connection, most: u64) -> StoreResult<(u64, bool)> {
    let from = indexed_upto(conn)? as i64;
    let latest = latest_sequence(conn)? as i64;
    // Sorted in memory (`temp_store`): a slice at a time.
    let upto = latest.min(from.saturating_add(most as i64));
    if upto <= from {
        return Ok((from as u64, true));
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO event_subjects (subject, sequence)
           SELECT 'e:' || employee_id, sequence FROM events
            WHERE sequence > ?1 AND sequence <= ?2 AND employee_id IS NOT NULL
           UNION ALL
           SELECT 'v:' || vehicle_id, sequence FROM events
            WHERE sequence > ?1 AND sequence <= ?2 AND vehicle_id IS NOT NULL
           UNION ALL
           SELECT 'v:' || prior_vehicle_id, sequence FROM events
            WHERE sequence > ?1 AND sequence <= ?2 AND prior_vehicle_id IS NOT NULL
           ORDER BY 1, 2",
    )?
    .execute(params![from, upto])?;
    conn.prepare_cached("UPDATE event_index SET indexed_upto = ?1 WHERE id = 1")?
        .execute([upto])?;
    Ok((upto as u64, upto >= latest))
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
/// that one pruning batch holds the writer only briefly), and their
/// subjects; returns how many.
pub fn prune(conn: &Connection, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
    let old: Vec<i64> = conn
        .prepare_cached(
            "SELECT sequence FROM events WHERE event_time < ?1 ORDER BY event_time LIMIT ?2",
        )?
        .query_map(params![millis(before), limit as i64], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut event = conn.prepare_cached("DELETE FROM events WHERE sequence = ?1")?;
    let mut subjects = conn.prepare_cached("DELETE FROM event_subjects WHERE sequence = ?1")?;
    for sequence in &old {
        event.execute([sequence])?;
        subjects.execute([sequence])?;
    }
    Ok(old.len() as u64)
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: PageRequest<u64>,
    ) -> StoreResult<Page<Event>> {
        let filter = filter.clone();
        self.readers
            .read(move |conn| list(conn, &filter, &page))
            .await
    }

    fn event_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.clone()
    }

    async fn latest_event_sequence(&self) -> StoreResult<u64> {
        self.readers.read(latest_sequence).await
    }

    /// One writer takes sequences as it commits: none is in flight.
    async fn sequences_taken(&self) -> StoreResult<u64> {
        self.latest_event_sequence().await
    }

    async fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.writer
            .write(move |conn| prune(conn, before, limit))
            .await
    }
}
