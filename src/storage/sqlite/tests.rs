//! The embedded store's SQL: what it builds, and that SQLite runs it on the
//! indexes meant for it. Behaviour is covered by the conformance suite in
//! `tests/storage`, shared with every backend.

use chrono::NaiveDate;
use rusqlite::Connection;
use rusqlite::types::Value;

use super::bookings::{history_conditions, history_page_query};
use super::schema;
use crate::domain::{HistoryCursor, HistoryFilter, PageRequest};

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn schema_db() -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    conn
}

fn cursor() -> HistoryCursor {
    HistoryCursor {
        date: date("2026-12-01"),
        id: "m".into(),
    }
}

/// SQLite's plan for `sql`, one line per step.
fn plan(conn: &Connection, sql: &str, values: &[Value]) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(values), |row| {
            row.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}

#[test]
fn history_conditions_bind_only_the_filters_that_are_set() {
    let (clause, values) = history_conditions(&HistoryFilter::default(), None);
    assert_eq!(clause, "");
    assert!(values.is_empty());

    let filter = HistoryFilter {
        employee_id: Some("emp-1".into()),
        start_date: Some(date("2026-11-01")),
        end_date: Some(date("2026-11-30")),
        ..Default::default()
    };
    let (clause, values) = history_conditions(&filter, Some(&cursor()));
    assert_eq!(
        clause,
        " WHERE employee_id = ?1 AND allocation_date >= ?2 AND allocation_date <= ?3 \
         AND (allocation_date, id) < (?4, ?5)"
    );
    let days = |s: &str| Value::Integer(date(s).to_epoch_days().into());
    assert_eq!(
        values,
        vec![
            Value::Text("emp-1".into()),
            days("2026-11-01"),
            days("2026-11-30"),
            days("2026-12-01"),
            Value::Text("m".into()),
        ]
    );

    // A cursor before the end date becomes the one upper bound.
    let deep = HistoryCursor {
        date: date("2026-11-10"),
        id: "m".into(),
    };
    let (_, values) = history_conditions(&filter, Some(&deep));
    assert_eq!(values[2], days("2026-11-10"));
}

#[test]
fn every_history_query_reads_an_index_in_order_without_sorting() {
    let conn = schema_db();
    let by = |f: fn(&mut HistoryFilter)| {
        let mut filter = HistoryFilter::default();
        f(&mut filter);
        filter
    };
    let cases = [
        (
            by(|f| f.employee_id = Some("e".into())),
            "allocations_employee_date",
        ),
        (
            by(|f| f.vehicle_id = Some("v".into())),
            "allocations_vehicle_date",
        ),
        (
            by(|f| f.driver_id = Some("d".into())),
            "allocations_driver_date",
        ),
        (
            by(|f| {
                f.start_date = Some(date("2026-01-01"));
                f.end_date = Some(date("2026-01-31"));
            }),
            "allocations_date",
        ),
        (HistoryFilter::default(), "allocations_date"),
    ];
    for (filter, index) in cases {
        for after in [None, Some(cursor())] {
            let page = PageRequest { size: 50, after };
            let (sql, values) = history_page_query(&filter, &page);
            let plan = plan(&conn, &sql, &values);
            assert!(
                plan.contains(index),
                "{filter:?} should use {index}:\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts:\n{plan}");
        }
    }
}

#[test]
fn booking_lookups_use_the_unique_indexes() {
    let conn = schema_db();
    let sql =
        "SELECT id FROM allocations WHERE vehicle_id = ?1 AND allocation_date = ?2 AND id <> ?3";
    let values = [
        Value::Text("v".into()),
        Value::Integer(1),
        Value::Text("x".into()),
    ];
    assert!(plan(&conn, sql, &values).contains("allocations_vehicle_date"));
}

#[test]
fn a_newer_schema_is_refused() {
    let mut conn = schema_db();
    conn.pragma_update(None, "user_version", schema::SCHEMA_VERSION + 1)
        .unwrap();
    let err = schema::migrate(&mut conn).unwrap_err();
    assert!(err.to_string().contains("newer version"), "{err}");
}

#[test]
fn migrating_twice_changes_nothing() {
    let mut conn = schema_db();
    schema::migrate(&mut conn).unwrap();
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
}

#[test]
fn the_writer_commits_durably_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("db")).unwrap();
    schema::configure_writer(&conn, 8).unwrap();
    let pragma = |name: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .unwrap()
    };
    // 2 is FULL: the WAL is synced on every commit.
    assert_eq!(pragma("synchronous"), 2);
    assert_eq!(pragma("foreign_keys"), 1);
    assert_eq!(pragma("temp_store"), 2, "savepoints undo in memory");
    assert_eq!(pragma("cache_size"), -8192);
    assert_eq!(pragma("wal_autocheckpoint"), 10_000);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn upgrading_from_version_1_totals_the_existing_bookings() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(schema::SCHEMA_V1_FOR_TESTS).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute_batch(
        "INSERT INTO employees VALUES ('e1', 'E', 'e1@x', 'D');
         INSERT INTO drivers VALUES ('d1', 'D', '1', 'L1');
         INSERT INTO vehicles VALUES ('v1', 'R1', 'M', 'M', 4, 'd1');
         INSERT INTO allocations VALUES ('a1', 'e1', 'v1', 'd1', 10, '', 0, 0, 1);",
    )
    .unwrap();
    schema::migrate(&mut conn).unwrap();
    let total: i64 = conn
        .query_row(
            "SELECT bookings FROM daily_bookings WHERE allocation_date = 10",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(total, 1);
}

mod opening {
    use super::super::{DATABASE_FILE, OpenError, SqliteStore};
    use crate::seed::{SeedPlan, generate_fleet};
    use crate::storage::prelude::*;

    #[test]
    fn a_data_directory_is_opened_by_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open(dir.path()).unwrap();
        match SqliteStore::open(dir.path()) {
            Err(OpenError::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Locked, got {:?}", other.err()),
        }
        let message = SqliteStore::open_for_loading(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("in use by another process (pid"),
            "{message}"
        );
        drop(first);
        SqliteStore::open(dir.path()).unwrap();
    }

    #[test]
    fn an_empty_database_file_is_refused_unless_the_directory_is_new() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        // The store's contents lost: the file truncated.
        std::fs::write(dir.path().join(DATABASE_FILE), b"").unwrap();
        let error = SqliteStore::open(dir.path()).err().unwrap();
        assert!(matches!(error, OpenError::EmptyFile { .. }), "{error}");
        // A new data directory, even with an empty file made ready in it,
        // is fine.
        let new = tempfile::tempdir().unwrap();
        std::fs::write(new.path().join(DATABASE_FILE), b"").unwrap();
        SqliteStore::open(new.path()).unwrap();
        SqliteStore::open(&new.path().join("fresh")).unwrap();
    }

    #[tokio::test]
    async fn damaged_pages_fail_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            let (employees, vehicles) = generate_fleet(
                &SeedPlan {
                    employees: 2000,
                    vehicles: 300,
                    ..SeedPlan::default()
                },
                "2026-11-26T10:00:00Z".parse().unwrap(),
            );
            store.insert_fleet(employees, vehicles).await.unwrap();
        }
        SqliteStore::open_checked(dir.path()).unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());
        let middle = bytes.len() / 2 / 4096 * 4096;
        bytes[middle..middle + 8192].fill(0xA5);
        std::fs::write(&path, bytes).unwrap();

        let error = SqliteStore::open_checked(dir.path()).err().unwrap();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("restore"), "{error}");
    }

    /// Writes a fleet of 2,600 events: a few hundred KiB of pages.
    async fn write_a_fleet(store: &SqliteStore) {
        let (employees, vehicles) = generate_fleet(
            &SeedPlan {
                employees: 2000,
                vehicles: 300,
                ..SeedPlan::default()
            },
            "2026-11-26T10:00:00Z".parse().unwrap(),
        );
        store.insert_fleet(employees, vehicles).await.unwrap();
    }

    /// Waits up to 10 s for the database file to grow past `bytes`.
    async fn copied_past(path: &std::path::Path, bytes: u64, why: &str) {
        let size = || std::fs::metadata(path).unwrap().len();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < bytes {
            assert!(
                std::time::Instant::now() < deadline,
                "{why}: {} bytes",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Committed pages reach the database file long before the writer's own
    /// checkpoint would copy them (at 10,000 WAL pages, about 40 MiB).
    #[tokio::test]
    async fn the_background_checkpointer_copies_committed_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let empty = std::fs::metadata(&path).unwrap().len();
        write_a_fleet(&store).await;
        let wal = std::fs::metadata(dir.path().join(format!("{DATABASE_FILE}-wal")))
            .unwrap()
            .len();
        assert!(
            wal < 10_000 * 4096,
            "below the writer's own threshold: {wal}"
        );
        copied_past(&path, empty + 256 * 1024, "nothing was copied").await;
    }

    /// A reader in the way when the commit's checkpoint runs: the pages are
    /// copied once it has gone, with no commit after it to wake anyone.
    #[tokio::test]
    async fn a_checkpoint_a_reader_held_back_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let path = dir.path().join(DATABASE_FILE);
        // A snapshot from before the commit.
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM employees", [], |row| row.get(0))
            .unwrap();
        let empty = std::fs::metadata(&path).unwrap().len();
        write_a_fleet(&store).await;
        // Time for the checkpoint the commit woke, which the reader stops.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let held = std::fs::metadata(&path).unwrap().len();
        assert!(held < empty + 256 * 1024, "copied past the reader");
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        copied_past(
            &path,
            empty + 256 * 1024,
            "never copied after the reader went",
        )
        .await;
    }
}

mod health {
    use std::time::Duration;

    use super::super::SqliteStore;
    use crate::seed::{SeedPlan, generate_fleet};
    use crate::storage::StoreError;
    use crate::storage::prelude::*;

    #[tokio::test]
    async fn failing_writes_fail_the_ping_until_a_probe_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.ping().await.unwrap();
        store.inject_full_disk(true);
        let (employees, vehicles) = generate_fleet(
            &SeedPlan {
                employees: 5,
                vehicles: 2,
                ..SeedPlan::default()
            },
            "2026-11-26T10:00:00Z".parse().unwrap(),
        );
        let error = store
            .insert_fleet(employees.clone(), vehicles.clone())
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
        for _ in 0..2 {
            let error = store.ping().await.unwrap_err();
            assert!(
                crate::storage::error_chain(&error).contains("disk is full"),
                "{error:?}"
            );
        }
        // The disk has room again: the next ping's probe write succeeds.
        store.inject_full_disk(false);
        store.ping().await.unwrap();
        store.insert_fleet(employees, vehicles).await.unwrap();
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn the_ping_does_not_queue_behind_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let (entered, mut entries) = tokio::sync::mpsc::unbounded_channel();
        let mut reads = Vec::new();
        for _ in 0..super::super::READ_CONNECTIONS + 2 {
            let (held, entered) = (std::sync::Arc::clone(&held), entered.clone());
            let readers = store.readers.clone();
            reads.push(tokio::spawn(async move {
                readers
                    .read(move |_| {
                        let _ = entered.send(());
                        let _ = held.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            }));
        }
        // Every reader connection is busy, and more reads wait for one.
        for _ in 0..super::super::READ_CONNECTIONS {
            entries.recv().await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), store.ping())
            .await
            .expect("the ping answers while every reader is busy")
            .unwrap();
        for _ in 0..reads.len() {
            let _ = release.send(());
        }
        for read in reads {
            read.await.unwrap().unwrap();
        }
    }
}

mod events {
    use chrono::{SubsecRound, Utc};

    use super::super::SqliteStore;
    use crate::domain::{Actor, BookingPolicy, EventFilter, NewAllocation, Origin, PageRequest};
    use crate::seed::{SeedPlan, generate_fleet};
    use crate::storage::StoreError;
    use crate::storage::prelude::*;

    #[tokio::test]
    async fn a_write_whose_commit_fails_leaves_neither_change_nor_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let (employees, vehicles) = generate_fleet(
            &SeedPlan {
                employees: 3,
                vehicles: 2,
                ..SeedPlan::default()
            },
            "2026-11-26T10:00:00Z".parse().unwrap(),
        );
        store
            .insert_fleet(employees.clone(), vehicles.clone())
            .await
            .unwrap();
        let now = Utc::now().trunc_subsecs(3);
        let window = BookingPolicy::default().window(now);
        let booking = |id: &str, e: usize| NewAllocation {
            id: id.into(),
            employee_id: employees[e].id.clone(),
            vehicle_id: vehicles[e].id.clone(),
            date: window.today,
            purpose: String::new(),
            now,
            window,
            idempotency_key: None,
            origin: Origin::new(Actor::anonymous(), "r"),
        };
        let signal = store.event_signal();
        // The fleet's own events (by system:seed) come first.
        let base = *signal.borrow();
        assert_eq!(base, 7);
        store.create_allocation(booking("a1", 0)).await.unwrap();
        assert_eq!(*signal.borrow(), base + 1);

        // The booking is written and its event appended, then the commit
        // fails: neither stays.
        store.inject_full_disk(true);
        let error = store.create_allocation(booking("a2", 1)).await.unwrap_err();
        assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
        store.inject_full_disk(false);
        let all = PageRequest {
            size: 10,
            after: Some(base),
        };
        let events = store
            .list_events(&EventFilter::default(), all.clone())
            .await
            .unwrap();
        assert_eq!(events.items.len(), 1);
        assert!(store.get_allocation("a2").await.is_err());
        assert_eq!(*signal.borrow(), base + 1);

        // The sequence the failed write took is handed out again: no gap.
        store.create_allocation(booking("a3", 1)).await.unwrap();
        let events = store
            .list_events(&EventFilter::default(), all)
            .await
            .unwrap();
        let sequences: Vec<_> = events.items.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, [base + 1, base + 2]);
        assert_eq!(*signal.borrow(), base + 2);
    }
}

mod subjects {
    use chrono::{DateTime, Utc};

    use super::super::events::SUBJECT_BATCH;
    use super::super::{DATABASE_FILE, SqliteStore};
    use crate::domain::{BookingPolicy, Event, EventFilter, PageRequest};
    use crate::seed::{self, SeedPlan};
    use crate::storage::prelude::*;

    /// Every event matching `filter`, page by page.
    async fn pages(store: &SqliteStore, filter: &EventFilter, size: usize) -> Vec<u64> {
        let mut sequences = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_events(filter, PageRequest { size, after })
                .await
                .unwrap();
            assert!(page.items.len() <= size);
            sequences.extend(page.items.iter().map(|e| e.sequence));
            if !page.has_more {
                return sequences;
            }
            after = sequences.last().copied();
        }
    }

    /// Employee and vehicle filters read the subject index up to where it
    /// ends and the events after it by column; the two parts meet with
    /// nothing lost or repeated, whichever page the seam falls on.
    #[tokio::test]
    async fn subject_queries_meet_exactly_where_the_index_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let now: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        let plan = SeedPlan {
            employees: 30,
            vehicles: 20,
            allocations: SEEDED,
            seed: 7,
        };
        const SEEDED: usize = 6000;
        let (employees, vehicles) = seed::generate_fleet(&plan, now);
        store.insert_fleet(employees, vehicles).await.unwrap();
        let mut bookings = seed::all_bookings(&plan, &BookingPolicy::default(), now).unwrap();
        // The first part is indexed; the rest stays below the batch.
        let rest = bookings.split_off(SEEDED - 1000);
        store.insert_allocations(bookings).await.unwrap();
        store.insert_allocations(rest).await.unwrap();
        // The writer indexes after answering a write, before it takes the
        // next: once a later write is answered, the indexing is done.
        store
            .prune_events(now - chrono::Duration::days(10_000), 1)
            .await
            .unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let upto: i64 = conn
            .query_row("SELECT indexed_upto FROM event_index", [], |row| row.get(0))
            .unwrap();
        let upto = upto as u64;
        let latest = 50 + SEEDED as u64;
        assert!(
            upto >= SUBJECT_BATCH && upto < latest,
            "both parts are read: indexed up to {upto}"
        );
        let everything = store
            .list_events(
                &EventFilter::default(),
                PageRequest {
                    size: 100_000,
                    after: None,
                },
            )
            .await
            .unwrap()
            .items;
        let expected = |filter: &EventFilter| -> Vec<u64> {
            everything
                .iter()
                .filter(|e: &&Event| filter.matches(&e.event))
                .map(|e| e.sequence)
                .collect()
        };
        // The subjects of the events on both sides of the seam.
        let at = |sequence: u64| {
            &everything
                .iter()
                .find(|e| e.sequence == sequence)
                .unwrap()
                .event
        };
        let employee = at(upto).employee_id().map(str::to_owned);
        let vehicle = at(upto + 1).vehicle_ids().last().map(|v| (*v).to_owned());
        assert!(employee.is_some() && vehicle.is_some());
        let filters = [
            EventFilter {
                employee_id: employee.clone(),
                ..EventFilter::default()
            },
            EventFilter {
                vehicle_id: vehicle.clone(),
                ..EventFilter::default()
            },
            EventFilter {
                employee_id: employee,
                vehicle_id: vehicle,
                ..EventFilter::default()
            },
        ];
        for filter in &filters {
            let want = expected(filter);
            assert!(want.iter().any(|s| *s <= upto) && want.iter().any(|s| *s > upto));
            for size in [1, 7, 50, 1000] {
                assert_eq!(
                    pages(&store, filter, size).await,
                    want,
                    "{filter:?} by {size}"
                );
            }
        }
    }
}

/// A statement SQLite refuses is not repeated in the error: it can be as
/// long as a caller's filter made it (one bound value per listed kind).
#[test]
fn a_refused_statement_is_not_kept_in_the_error() {
    use crate::domain::{EventFilter, EventKind};
    let conn = schema_db();
    let filter = EventFilter {
        kinds: vec![EventKind::AllocationCreated; 33_000],
        ..EventFilter::default()
    };
    let page = PageRequest {
        size: 10,
        after: None,
    };
    let error = super::events::list(&conn, &filter, &page).unwrap_err();
    let text = crate::storage::error_chain(&error);
    assert!(text.contains("variable number must be between"), "{text}");
    assert!(
        !text.contains("SELECT") && !text.contains("kind IN"),
        "{text}"
    );
}
