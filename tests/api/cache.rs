//! The cache as clients see it: replicas sharing one store and one Redis
//! read each other's writes, and Redis going away costs nothing but speed.

use std::sync::Arc;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vehicle_allocation::cache::CacheConfig;
use vehicle_allocation::clock::Clock;
use vehicle_allocation::grpc::REQUEST_ID_HEADER;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, DeleteAllocationRequest, GetAllocationRequest,
    ListAllocationHistoryRequest, ListAvailableVehiclesRequest, UpdateAllocationRequest,
};

use crate::helpers::{AppOptions, TestApp, logged_lines_with, spawn_app, spawn_app_with};
use crate::redis_support::{self, PrivateRedis};

/// The request id of the calls below to `app`: its gRPC port and its data
/// directory's name, unique among the apps of this test binary. Log lines
/// written while serving a request carry its id, and the log is shared by
/// every test in the binary: a test counts its own app's lines by it.
fn tag(app: &TestApp) -> String {
    let dir = app.data_dir.path().file_name().unwrap().to_string_lossy();
    format!("cache-{}-{dir}", app.channel_addr().port())
}

/// `message` as a request to `app` carrying its tag.
fn tagged<T>(app: &TestApp, message: T) -> tonic::Request<T> {
    let mut request = app.admin.grpc(message);
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, tag(app).parse().unwrap());
    request
}

async fn get(app: &TestApp, id: &str) -> Result<v1::Allocation, tonic::Status> {
    app.allocations
        .clone()
        .get_allocation(tagged(app, GetAllocationRequest { id: id.into() }))
        .await
        .map(tonic::Response::into_inner)
}

async fn set_purpose(app: &TestApp, id: &str, purpose: &str) -> v1::Allocation {
    app.allocations
        .clone()
        .update_allocation(tagged(
            app,
            UpdateAllocationRequest {
                allocation: Some(v1::Allocation {
                    id: id.into(),
                    purpose: purpose.into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["purpose".into()],
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn history_of(app: &TestApp, employee: &str) -> Vec<v1::Allocation> {
    app.allocations
        .clone()
        .list_allocation_history(tagged(
            app,
            ListAllocationHistoryRequest {
                employee_id: employee.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .allocations
}

async fn free_vehicles(app: &TestApp, day: i64) -> Vec<String> {
    app.fleet
        .clone()
        .list_available_vehicles(tagged(
            app,
            ListAvailableVehiclesRequest {
                date: app.day(day),
                page_size: 500,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .vehicles
        .into_iter()
        .map(|v| v.id)
        .collect()
}

/// Books vehicle `v` for employee `e`, `days` from today, as
/// `TestApp::book` does, but tagged.
async fn book(app: &TestApp, e: usize, v: usize, days: i64) -> v1::Allocation {
    app.allocations
        .clone()
        .create_allocation(tagged(
            app,
            CreateAllocationRequest {
                allocation: Some(v1::Allocation {
                    employee_id: app.employee(e),
                    vehicle_id: app.vehicle(v),
                    allocation_date: app.day(days),
                    purpose: format!("trip {e}-{v}"),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Two replicas: separate processes in all but name, sharing the data
/// directory and the Redis key prefix.
async fn replicas(cache: CacheConfig) -> (TestApp, TestApp) {
    let a = spawn_app_with(AppOptions {
        cache: cache.clone(),
        ..AppOptions::default()
    })
    .await;
    let b = spawn_app_with(AppOptions {
        cache,
        fleet: false,
        data_dir: Some(Arc::clone(&a.data_dir)),
        shared_store: Some(Arc::clone(&a.store)),
        ..AppOptions::default()
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_replica_is_read_on_the_other() {
    let Some(url) = redis_support::shared_url() else {
        return redis_support::skip("no Redis at REDIS_URL or redis://127.0.0.1:6379");
    };
    let (a, b) = replicas(redis_support::cache_config(&url)).await;
    let employee = a.employee(0);
    // B caches what it sees first.
    assert!(history_of(&b, &employee).await.is_empty());
    assert!(free_vehicles(&b, 2).await.contains(&a.vehicle(0)));

    let booked = a.book(0, 0, 2).await.unwrap();
    assert_eq!(get(&b, &booked.id).await.unwrap(), booked);
    assert_eq!(history_of(&b, &employee).await, vec![booked.clone()]);
    assert!(!free_vehicles(&b, 2).await.contains(&a.vehicle(0)));

    let changed = set_purpose(&a, &booked.id, "changed on A").await;
    assert_eq!(get(&b, &booked.id).await.unwrap(), changed);
    assert_eq!(history_of(&b, &employee).await, vec![changed.clone()]);

    a.allocations
        .clone()
        .delete_allocation(DeleteAllocationRequest {
            id: booked.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&b, &booked.id).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert!(history_of(&b, &employee).await.is_empty());
    assert!(free_vehicles(&b, 2).await.contains(&a.vehicle(0)));

    let stats = b.cache.as_ref().unwrap().stats();
    assert!(
        stats.hits + stats.misses > 0 && stats.errors == 0,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_read_their_peers_writes_under_concurrency() {
    let Some(url) = redis_support::shared_url() else {
        return redis_support::skip("no Redis at REDIS_URL or redis://127.0.0.1:6379");
    };
    let (a, b) = replicas(redis_support::cache_config(&url)).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mut writers = Vec::new();
    for booking in 0..8 {
        let booked = a.book(booking, booking, 1).await.unwrap();
        // Readers on B keep the entry hot, racing the writes.
        let hammer = {
            let b = Arc::clone(&b);
            let id = booked.id.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    get(&b, &id).await.unwrap();
                }
            })
        };
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        writers.push(tokio::spawn(async move {
            for round in 0..15 {
                let purpose = format!("round {round}");
                set_purpose(&a, &booked.id, &purpose).await;
                // Acknowledged on A, so B must see it now.
                let seen = get(&b, &booked.id).await.unwrap();
                assert_eq!(
                    seen.purpose, purpose,
                    "B read older data than an acknowledged write"
                );
            }
            hammer.await.unwrap();
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let stats = b.cache.as_ref().unwrap().stats();
    assert!(stats.hits > 0, "the cache was in play: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_costs_nothing_but_speed_and_caching_resumes_when_it_is_back() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let app = spawn_app_with(AppOptions {
        cache: redis_support::cache_config(&redis.url()),
        ..AppOptions::default()
    })
    .await;
    let cache = app.cache.clone().unwrap();
    let booked = book(&app, 0, 0, 1).await;
    get(&app, &booked.id).await.unwrap();
    get(&app, &booked.id).await.unwrap();
    assert_eq!(cache.stats().hits, 1);

    redis.kill();
    // Reads and writes go on, served by the store, without an error.
    let changed = set_purpose(&app, &booked.id, "while Redis was down").await;
    for _ in 0..5 {
        assert_eq!(get(&app, &booked.id).await.unwrap(), changed);
    }
    let second = book(&app, 1, 1, 2).await;
    assert_eq!(history_of(&app, &app.employee(1)).await, vec![second]);
    let health = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        ServingStatus::Serving,
        "the cache is not the store"
    );
    let down = cache.stats();
    assert!(down.errors >= 5, "{down:?}");
    assert_eq!(
        down.hits, 1,
        "nothing was served from a cache it could not reach"
    );

    assert!(redis.restart());
    // The first read after the restart refills, the next one hits; neither
    // returns anything older than the write made while Redis was away.
    assert_eq!(get(&app, &booked.id).await.unwrap(), changed);
    assert_eq!(get(&app, &booked.id).await.unwrap(), changed);
    assert!(
        cache.stats().hits > down.hits,
        "caching resumed: {:?}",
        cache.stats()
    );

    // Only this app's lines: every call above but the health check (which
    // does not touch Redis) carries its tag.
    let ours = format!("request_id={}", tag(&app));
    let logs = logged_lines_with(&ours);
    let count = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("Redis unavailable"),
        1,
        "the degradation is logged once"
    );
    assert_eq!(count("Redis available again"), 1);
}

#[tokio::test]
async fn the_in_process_cache_answers_repeat_reads() {
    let app = spawn_app().await;
    let booked = app.book(0, 0, 1).await.unwrap();
    let before = app.faults.reads();
    for _ in 0..3 {
        assert_eq!(get(&app, &booked.id).await.unwrap(), booked);
    }
    assert_eq!(app.faults.reads() - before, 1, "one store read, two hits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_read_at_once_by_a_running_replica() {
    let Some(url) = redis_support::shared_url() else {
        return redis_support::skip("no Redis at REDIS_URL or redis://127.0.0.1:6379");
    };
    let config = redis_support::cache_config(&url);
    let replica = spawn_app_with(AppOptions {
        cache: config.clone(),
        ..AppOptions::default()
    })
    .await;
    let employee = replica.employees[0].clone();
    let read = || async {
        replica
            .fleet
            .clone()
            .get_employee(v1::GetEmployeeRequest {
                id: employee.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .name
    };
    // The replica caches the employee as it is.
    assert_eq!(read().await, employee.name);
    assert_eq!(read().await, employee.name);

    // `import` in another process, in all but name: on the same store and
    // the same Redis.
    let importer = vehicle_allocation::storage::with_cache(Arc::clone(&replica.store), &config)
        .unwrap()
        .store;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("employees.csv");
    std::fs::write(
        &file,
        format!(
            "id,name,email,department\n{},Renamed By Import,{},{}\n",
            employee.id, employee.email, employee.department
        ),
    )
    .unwrap();
    let now = replica.clock.now();
    let report = vehicle_allocation::import::import(
        importer.as_ref(),
        &vehicle_allocation::import::ImportFiles {
            employees: Some(file),
            ..Default::default()
        },
        now,
        replica.policy.window(now),
        false,
    )
    .await
    .unwrap();
    assert!(report.written);

    assert_eq!(read().await, "Renamed By Import");
}
