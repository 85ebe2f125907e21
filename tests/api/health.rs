//! grpc.health.v1: follows the store, and goes NOT_SERVING on shutdown.

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use vehicle_allocation::proto::v1;

use crate::helpers::spawn_app;

const SERVICES: [&str; 3] = [
    "",
    "vehicle_allocation.v1.AllocationService",
    "vehicle_allocation.v1.FleetService",
];

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

/// Reads the watch stream until it reports `status`.
async fn until(stream: &mut tonic::Streaming<HealthCheckResponse>, status: ServingStatus) {
    while let Some(update) = stream.message().await.unwrap() {
        if update.status() == status {
            return;
        }
    }
    panic!("the watch ended before {status:?}");
}

#[tokio::test]
async fn every_service_is_serving() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in SERVICES {
        let response = health.check(request(service)).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let status = health.check(request("no.such.Service")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_follows_the_store_and_recovers_by_itself() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(request("vehicle_allocation.v1.AllocationService"))
        .await
        .unwrap()
        .into_inner();
    until(&mut watch, ServingStatus::Serving).await;

    app.faults.fail_pings(true);
    until(&mut watch, ServingStatus::NotServing).await;
    let fleet = health
        .check(request("vehicle_allocation.v1.FleetService"))
        .await
        .unwrap();
    assert_eq!(fleet.into_inner().status(), ServingStatus::NotServing);

    app.faults.fail_pings(false);
    until(&mut watch, ServingStatus::Serving).await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_then_lets_in_flight_calls_finish() {
    let mut app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health.watch(request("")).await.unwrap().into_inner();
    until(&mut watch, ServingStatus::Serving).await;

    let gate = app.faults.hold_creates();
    let booking = v1::Allocation {
        employee_id: app.employee(0),
        vehicle_id: app.vehicle(0),
        allocation_date: app.day(1),
        ..Default::default()
    };
    let mut client = app.allocations.clone();
    let in_flight = tokio::spawn(async move {
        client
            .create_allocation(v1::CreateAllocationRequest {
                allocation: Some(booking),
                request_id: String::new(),
            })
            .await
    });
    gate.entered.notified().await;

    let server = app.server();
    app.begin_shutdown();
    until(&mut watch, ServingStatus::NotServing).await;
    drop(watch);

    gate.release.notify_one();
    let created = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(created.into_inner().employee_id, app.employee(0));
    server.await.unwrap().expect("clean stop");
}

#[tokio::test]
async fn failing_writes_turn_health_not_serving_until_they_work_again() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    let mut watch = health.watch(request("")).await.unwrap().into_inner();
    until(&mut watch, ServingStatus::Serving).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    let store = app.embedded.clone().unwrap();
    store.inject_full_disk(true);
    let status = app.book(0, 0, 1).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    until(&mut watch, ServingStatus::NotServing).await;
    assert_eq!(app.get("/readyz").await.status(), 503);

    store.inject_full_disk(false);
    until(&mut watch, ServingStatus::Serving).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.book(0, 0, 1).await.unwrap();
}

#[tokio::test]
async fn a_service_whose_mongodb_is_down_at_startup_starts_not_serving() {
    use vehicle_allocation::storage::StoreConfig;
    use vehicle_allocation::storage::mongo::MongoConfig;

    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::plain_settings(dir.path());
    // Nothing listens on port 1.
    settings.store = StoreConfig::Mongo(MongoConfig {
        url: "mongodb://127.0.0.1:1/?directConnection=true".into(),
        database: "never".into(),
        max_pool_size: 2,
        connect_timeout: std::time::Duration::from_millis(200),
        server_selection_timeout: std::time::Duration::from_millis(200),
    });
    settings.health_check_interval = std::time::Duration::from_millis(200);
    let app = vehicle_allocation::app::Application::build(settings)
        .await
        .expect("starts without its MongoDB");
    let addr = app.grpc_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = HealthClient::new(channel.clone())
        .check(request(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::NotServing);
    let mut allocations = v1::allocation_service_client::AllocationServiceClient::new(channel);
    let status = allocations
        .create_allocation(v1::CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: "emp-00001".into(),
                vehicle_id: "veh-0001".into(),
                // Two days ahead is bookable whatever the hour.
                allocation_date: (chrono::Utc::now().date_naive() + chrono::Days::new(2))
                    .to_string(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let status = allocations
        .get_allocation(v1::GetAllocationRequest { id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
