//! Upkeep of the embedded store: seeding, reset, the health probe, the
//! page-token key.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::Connection;

use super::SqliteStore;
use super::bookings::{count_bookings, insert_allocation};
use crate::domain::event::{seeded_bookings, seeded_fleet};
use crate::domain::fleet::seeded_timeline;
use crate::domain::{Allocation, Employee, Origin, PageKey, Vehicle};
use crate::storage::Maintenance;
use crate::storage::{StoreError, StoreResult};

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
        let timeline = seeded_timeline(v)?;
        if let Some(driver) = &v.driver {
            super::fleet::put_driver(conn, driver)?;
        }
        super::fleet::put_vehicle(conn, v, Some(&timeline[0].driver_id))?;
        super::fleet::replace_timeline(conn, &v.id, &timeline)?;
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

/// Whether nothing at all is stored.
pub fn is_empty(conn: &Connection) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT NOT (EXISTS (SELECT 1 FROM employees)
                      OR EXISTS (SELECT 1 FROM vehicles)
                      OR EXISTS (SELECT 1 FROM allocations))",
        )?
        .query_row([], |row| row.get(0))?)
}

#[async_trait]
impl Maintenance for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        if !self.writer.is_running() {
            return Err(StoreError::unavailable(
                "the SQLite writer has stopped",
                std::io::Error::other("writer thread exited"),
            ));
        }
        // Writes failed for a storage reason (full disk, read-only file):
        // not serving until a probe write goes through.
        if let Some(failure) = self.writer.failure() {
            self.writer.write(probe_write).await.map_err(|_| {
                StoreError::unavailable("writing to the database", std::io::Error::other(failure))
            })?;
        }
        // Reading the schema touches the file, so a vanished or unreadable
        // database shows up here. On a connection of its own: health must
        // not queue behind the readers' requests.
        let conn = Arc::clone(&self.health);
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            conn.prepare_cached("SELECT count(*) FROM sqlite_schema")?
                .query_row([], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
        .map_err(|error| StoreError::internal("pinging SQLite", error))?
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.readers.read(is_empty).await
    }

    async fn page_token_key(&self, candidate: PageKey) -> StoreResult<PageKey> {
        self.writer
            .write(move |conn| page_token_key(conn, &candidate))
            .await
    }

    async fn reset(&self) -> StoreResult<()> {
        self.writer.write(reset).await
    }

    async fn insert_fleet(
        &self,
        employees: Vec<Employee>,
        vehicles: Vec<Vehicle>,
    ) -> StoreResult<()> {
        self.writer
            .write(move |conn| insert_fleet(conn, &employees, &vehicles))
            .await
    }

    async fn insert_allocations(&self, allocations: Vec<Allocation>) -> StoreResult<()> {
        self.writer
            .write(move |conn| insert_allocations(conn, &allocations))
            .await
    }
}
