//! The cache in front of a store, on each backend: the in-process one
//! always, Redis when it can be reached (SKIPPED loudly otherwise, and a
//! failure under CI).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use vehicle_allocation::cache::{
    CacheBackend, CacheConfig, CacheError, Fill, Found, MemoryBackend,
};
use vehicle_allocation::domain::{
    Allocation, AllocationChanges, HistoryFilter, Page, PageRequest, Vehicle,
};
use vehicle_allocation::seed::SeedPlan;
use vehicle_allocation::storage::cached::CachedStore;
use vehicle_allocation::storage::prelude::*;
use vehicle_allocation::storage::{self, Store};

use crate::fixture::Fixture;
use crate::instrumented_store::{InstrumentedStore, Instruments};
use crate::redis_support;

/// A cached store over a fresh embedded store, with its instruments.
struct Cached {
    cached: Arc<CachedStore>,
    store: Arc<dyn Store>,
    reads: Arc<Instruments>,
    fx: Fixture,
    _dir: tempfile::TempDir,
}

impl Cached {
    async fn new(config: &CacheConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(storage::sqlite::SqliteStore::open(dir.path()).unwrap());
        let fx = Fixture::load(sqlite.as_ref()).await;
        let instrumented = InstrumentedStore::new(sqlite);
        let reads = Arc::clone(&instrumented.instruments);
        let setup = storage::with_cache(Arc::new(instrumented), config).unwrap();
        Self {
            cached: setup.cache.expect("caching is on"),
            store: setup.store,
            reads,
            fx,
            _dir: dir,
        }
    }

    /// Runs `read` and tells whether the store answered it (a miss).
    async fn missed<T>(&self, read: impl Future<Output = T>) -> (T, bool) {
        let before = self.reads.reads();
        let value = read.await;
        (value, self.reads.reads() > before)
    }
}

/// Every backend available here: in-process always, Redis when reachable.
fn backends() -> Vec<(&'static str, CacheConfig)> {
    let mut configs = vec![("in-process", CacheConfig::default())];
    match redis_support::shared_url() {
        Some(url) => configs.push(("redis", redis_support::cache_config(&url))),
        None => redis_support::skip("no Redis at REDIS_URL or redis://127.0.0.1:6379"),
    }
    configs
}

fn all(
    filter: HistoryFilter,
) -> (
    HistoryFilter,
    PageRequest<vehicle_allocation::domain::HistoryCursor>,
) {
    (
        filter,
        PageRequest {
            size: 500,
            after: None,
        },
    )
}

async fn history(store: &Arc<dyn Store>, filter: &HistoryFilter) -> Page<Allocation> {
    let (filter, page) = all(filter.clone());
    store.list_allocation_history(&filter, page).await.unwrap()
}

async fn available(store: &Arc<dyn Store>, fx: &Fixture, day: i64) -> Vec<String> {
    let page: Page<Vehicle> = store
        .list_available_vehicles(
            fx.day(day),
            PageRequest {
                size: 500,
                after: None,
            },
        )
        .await
        .unwrap();
    page.items.into_iter().map(|v| v.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_then_a_hit() {
    for (backend, config) in backends() {
        let c = Cached::new(&config).await;
        let booked = c
            .store
            .create_allocation(c.fx.booking(0, 0, c.fx.day(1)))
            .await
            .unwrap();
        let (first, missed) = c.missed(c.store.get_allocation(&booked.id)).await;
        assert!(missed, "{backend}: the first read goes to the store");
        let (second, missed) = c.missed(c.store.get_allocation(&booked.id)).await;
        assert!(!missed, "{backend}: the second is a hit");
        assert_eq!(first.unwrap(), second.unwrap());

        for _ in 0..2 {
            c.store.get_employee(c.fx.employee(1)).await.unwrap();
            c.store
                .get_vehicle(c.fx.vehicle(1), c.fx.day(0))
                .await
                .unwrap();
            history(&c.store, &HistoryFilter::default()).await;
            available(&c.store, &c.fx, 1).await;
        }
        let stats = c.cached.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.errors),
            (5, 5, 0),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_invalidates_what_it_changed() {
    for (backend, config) in backends() {
        let c = Cached::new(&config).await;
        let (store, fx) = (&c.store, &c.fx);
        let by_employee = HistoryFilter {
            employee_id: Some(fx.employee(0).into()),
            ..Default::default()
        };
        let by_vehicle = |v: usize| HistoryFilter {
            vehicle_id: Some(fx.vehicle(v).into()),
            ..Default::default()
        };
        let by_driver = HistoryFilter {
            driver_id: Some(fx.driver_of(0).into()),
            ..Default::default()
        };
        let by_dates = HistoryFilter {
            start_date: Some(fx.day(0)),
            end_date: Some(fx.day(10)),
            ..Default::default()
        };
        // Warm every kind of entry.
        for filter in [
            &by_employee,
            &by_vehicle(0),
            &by_vehicle(5),
            &by_driver,
            &by_dates,
        ] {
            assert_eq!(history(store, filter).await.total_size, 0);
        }
        assert!(
            available(store, fx, 1)
                .await
                .contains(&fx.vehicle(0).to_owned())
        );

        // A create shows up in each of them.
        let booked = store
            .create_allocation(fx.booking(0, 0, fx.day(1)))
            .await
            .unwrap();
        for filter in [&by_employee, &by_vehicle(0), &by_driver, &by_dates] {
            assert_eq!(
                history(store, filter).await.items,
                vec![booked.clone()],
                "{backend}: {filter:?}"
            );
        }
        assert!(
            !available(store, fx, 1)
                .await
                .contains(&fx.vehicle(0).to_owned()),
            "{backend}"
        );
        assert_eq!(store.get_allocation(&booked.id).await.unwrap(), booked);

        // An update to another vehicle and day moves it in every entry.
        assert!(
            available(store, fx, 2)
                .await
                .contains(&fx.vehicle(5).to_owned())
        );
        let changes = AllocationChanges {
            vehicle_id: Some(fx.vehicle(5).into()),
            date: Some(fx.day(2)),
            purpose: Some("moved".into()),
        };
        let moved = store
            .update_allocation(fx.update(&booked.id, changes, None))
            .await
            .unwrap()
            .after;
        assert_eq!(
            store.get_allocation(&booked.id).await.unwrap(),
            moved,
            "{backend}"
        );
        assert!(
            history(store, &by_vehicle(0)).await.items.is_empty(),
            "{backend}: old vehicle"
        );
        assert_eq!(
            history(store, &by_vehicle(5)).await.items,
            vec![moved.clone()],
            "{backend}: new vehicle"
        );
        assert!(
            history(store, &by_driver).await.items.is_empty(),
            "{backend}: old driver"
        );
        assert_eq!(
            history(store, &by_employee).await.items,
            vec![moved.clone()]
        );
        assert!(
            available(store, fx, 1)
                .await
                .contains(&fx.vehicle(0).to_owned()),
            "{backend}: old day"
        );
        assert!(
            !available(store, fx, 2)
                .await
                .contains(&fx.vehicle(5).to_owned()),
            "{backend}: new day"
        );

        // A delete removes it everywhere.
        store
            .delete_allocation(fx.deletion(&booked.id, None))
            .await
            .unwrap();
        assert!(store.get_allocation(&booked.id).await.is_err(), "{backend}");
        for filter in [&by_employee, &by_vehicle(5), &by_dates] {
            assert!(
                history(store, filter).await.items.is_empty(),
                "{backend}: {filter:?}"
            );
        }
        assert!(
            available(store, fx, 2)
                .await
                .contains(&fx.vehicle(5).to_owned()),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_writes_leave_entries_alone_and_refusals_change_nothing() {
    for (backend, config) in backends() {
        let c = Cached::new(&config).await;
        let (store, fx) = (&c.store, &c.fx);
        let mine = store
            .create_allocation(fx.booking(0, 0, fx.day(1)))
            .await
            .unwrap();
        let by_employee = HistoryFilter {
            employee_id: Some(fx.employee(0).into()),
            ..Default::default()
        };
        history(store, &by_employee).await;
        store.get_allocation(&mine.id).await.unwrap();

        // Someone else's booking, on another vehicle and day.
        store
            .create_allocation(fx.booking(7, 7, fx.day(3)))
            .await
            .unwrap();
        let (_, missed) = c.missed(history(store, &by_employee)).await;
        assert!(
            !missed,
            "{backend}: another employee's booking keeps this page"
        );
        let (_, missed) = c.missed(store.get_allocation(&mine.id)).await;
        assert!(!missed, "{backend}");

        // A refused write invalidates nothing.
        assert!(
            store
                .create_allocation(fx.booking(1, 0, fx.day(1)))
                .await
                .is_err()
        );
        let (_, missed) = c.missed(store.get_allocation(&mine.id)).await;
        assert!(!missed, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_and_resetting_invalidate_everything() {
    for (backend, config) in backends() {
        let c = Cached::new(&config).await;
        let (store, fx) = (&c.store, &c.fx);
        assert_eq!(
            history(store, &HistoryFilter::default()).await.total_size,
            0
        );
        store.get_vehicle(fx.vehicle(0), fx.day(0)).await.unwrap();
        let plan = SeedPlan {
            allocations: 300,
            ..Fixture::PLAN
        };
        let seeded = vehicle_allocation::seed::all_bookings(&plan, &fx.policy, fx.now).unwrap();
        store.insert_allocations(seeded).await.unwrap();
        assert_eq!(
            history(store, &HistoryFilter::default()).await.total_size,
            300,
            "{backend}"
        );

        store.reset().await.unwrap();
        assert_eq!(
            history(store, &HistoryFilter::default()).await.total_size,
            0,
            "{backend}"
        );
        assert!(
            store.get_vehicle(fx.vehicle(0), fx.day(0)).await.is_err(),
            "{backend}: the fleet is gone too"
        );
    }
}

/// Concurrent misses for one key compute it once. In-process only: with
/// Redis the waiters' own round trips make the interleaving timing-bound.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_misses_for_one_key_read_the_store_once() {
    let c = Cached::new(&CacheConfig::default()).await;
    let booked = c
        .store
        .create_allocation(c.fx.booking(0, 0, c.fx.day(1)))
        .await
        .unwrap();
    let gate = c.reads.hold_reads();
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&c.store);
            let id = booked.id.clone();
            tokio::spawn(async move { store.get_allocation(&id).await })
        })
        .collect();
    gate.entered.notified().await;
    // On this one thread, yielding lets every other reader run up to the
    // point where it waits for the first one.
    tokio::task::yield_now().await;
    gate.release.notify_one();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap(), booked);
    }
    assert_eq!(c.reads.reads(), 1, "one store read for twenty readers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_expire_entries_after_the_ttl_and_tokens_after_twice_that() {
    let Some(url) = redis_support::shared_url() else {
        return redis_support::skip("no Redis at REDIS_URL or redis://127.0.0.1:6379");
    };
    let mut config = redis_support::cache_config(&url);
    config.ttl = std::time::Duration::from_secs(120);
    let c = Cached::new(&config).await;
    let booked = c
        .store
        .create_allocation(c.fx.booking(0, 0, c.fx.day(1)))
        .await
        .unwrap();
    c.store.get_allocation(&booked.id).await.unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", config.prefix))
        .query(&mut redis)
        .unwrap();
    let ttl_of = |redis: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("TTL").arg(key).query(redis).unwrap()
    };
    let entries: Vec<_> = keys.iter().filter(|k| k.contains(":entry:")).collect();
    let tokens: Vec<_> = keys.iter().filter(|k| k.contains(":gen:")).collect();
    assert_eq!(entries.len(), 1, "{keys:?}");
    assert!(tokens.iter().any(|k| k.ends_with(":gen:epoch")), "{keys:?}");
    assert!(
        tokens
            .iter()
            .any(|k| k.ends_with(&format!(":gen:alloc:{}", booked.id))),
        "{keys:?}"
    );
    let entry_ttl = ttl_of(&mut redis, entries[0]);
    assert!((1..=120).contains(&entry_ttl), "entry TTL {entry_ttl}");
    for token in tokens {
        let token_ttl = ttl_of(&mut redis, token);
        assert!((121..=240).contains(&token_ttl), "{token} TTL {token_ttl}");
    }
}

/// The in-process backend, except that invalidations are lost while
/// `losing` is set: reads and fills still work, as when a Redis write
/// times out but the next read gets through.
struct LosesBumps {
    inner: MemoryBackend,
    losing: AtomicBool,
}

#[async_trait]
impl CacheBackend for LosesBumps {
    async fn read(&self, generations: &[String], key: &str) -> Result<Found, CacheError> {
        self.inner.read(generations, key).await
    }

    async fn adopt(&self, generations: &[String], fresh: &str) -> Result<Vec<String>, CacheError> {
        self.inner.adopt(generations, fresh).await
    }

    async fn fill(&self, key: &str, stamp: &str, fill: Fill<'_>) -> Result<(), CacheError> {
        self.inner.fill(key, stamp, fill).await
    }

    async fn forget(&self, keys: &[String]) -> Result<(), CacheError> {
        self.inner.forget(keys).await
    }

    async fn bump(&self, generations: &[String], token: &str) -> Result<(), CacheError> {
        if self.losing.load(Ordering::SeqCst) {
            return Err(CacheError::Unavailable("bump lost".into()));
        }
        self.inner.bump(generations, token).await
    }

    fn name(&self) -> &'static str {
        "loses-bumps"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_invalidation_is_delivered_before_the_cache_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(storage::sqlite::SqliteStore::open(dir.path()).unwrap());
    let fx = Fixture::load(sqlite.as_ref()).await;
    let backend = Arc::new(LosesBumps {
        inner: MemoryBackend::new(1 << 20, Duration::from_secs(300)),
        losing: AtomicBool::new(false),
    });
    let store = CachedStore::new(sqlite, Arc::clone(&backend) as Arc<dyn CacheBackend>);
    let booked = store
        .create_allocation(fx.booking(0, 0, fx.day(1)))
        .await
        .unwrap();
    store.get_allocation(&booked.id).await.unwrap();
    assert_eq!(store.get_allocation(&booked.id).await.unwrap(), booked);
    assert_eq!(store.stats().hits, 1, "the booking is cached");

    backend.losing.store(true, Ordering::SeqCst);
    let changes = AllocationChanges {
        purpose: Some("changed while bumps were lost".into()),
        ..Default::default()
    };
    let changed = store
        .update_allocation(fx.update(&booked.id, changes, None))
        .await
        .unwrap()
        .after;
    assert_eq!(
        store.get_allocation(&booked.id).await.unwrap(),
        changed,
        "the cache is not read while a bump is owed"
    );

    backend.losing.store(false, Ordering::SeqCst);
    assert_eq!(
        store.get_allocation(&booked.id).await.unwrap(),
        changed,
        "the owed bump goes first, so the old entry is never served"
    );
    assert_eq!(store.get_allocation(&booked.id).await.unwrap(), changed);
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2), "{stats:?}");
}

/// An erasure deletes the cached employee instead of only retiring it: an
/// entry nobody is served must not keep the erased name either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_employee_is_deleted_from_the_cache_not_only_retired() {
    use vehicle_allocation::domain::FleetCommand;
    use vehicle_allocation::domain::admin::Erasure;
    for (name, config) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(storage::sqlite::SqliteStore::open(dir.path()).unwrap());
        let fx = Fixture::load(sqlite.as_ref()).await;
        let backend = vehicle_allocation::cache::open(&config)
            .unwrap()
            .expect("caching is on");
        let store = CachedStore::new(sqlite, Arc::clone(&backend));
        let id = fx.employee(3);
        let key = format!("employee:{id}");
        store.get_employee(id).await.unwrap();
        assert!(
            backend.read(&[], &key).await.unwrap().entry.is_some(),
            "{name}: the employee is cached"
        );
        store
            .apply_fleet(vec![fx.admin(FleetCommand::EraseEmployee {
                id: id.into(),
                cancel_conflicting: true,
            })])
            .await
            .unwrap();
        assert!(
            backend.read(&[], &key).await.unwrap().entry.is_none(),
            "{name}: the cached copy is gone"
        );
        assert_eq!(
            store.get_employee(id).await.unwrap().name,
            Erasure::of(id).name,
            "{name}"
        );
    }
}
