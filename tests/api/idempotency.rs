//! `request_id` makes a create safe to retry.

use chrono::Duration;
use tonic::Code;
use tonic_types::StatusExt;
use vehicle_allocation::proto::v1::{self, CreateAllocationRequest, ListAllocationHistoryRequest};

use crate::helpers::{TestApp, assert_status, spawn_app, violated_fields};

async fn create_keyed(
    app: &TestApp,
    employee: usize,
    vehicle: usize,
    date: &str,
    request_id: &str,
) -> Result<v1::Allocation, tonic::Status> {
    app.allocations
        .clone()
        .create_allocation(CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: app.employee(employee),
                vehicle_id: app.vehicle(vehicle),
                allocation_date: date.into(),
                ..Default::default()
            }),
            request_id: request_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn total_bookings(app: &TestApp) -> i64 {
    app.allocations
        .clone()
        .list_allocation_history(ListAllocationHistoryRequest::default())
        .await
        .unwrap()
        .into_inner()
        .total_size
}

#[tokio::test]
async fn a_retry_returns_the_booking_the_first_call_made() {
    let app = spawn_app().await;
    let date = app.day(0);
    let first = create_keyed(&app, 0, 0, &date, "9f1c-retry").await.unwrap();
    let retry = create_keyed(&app, 0, 0, &date, "9f1c-retry").await.unwrap();
    assert_eq!(retry, first);

    // Without a request_id the same booking is a conflict with the first.
    let status = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: date.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["allocation_id"], first.id);

    // Retried the next day, when the date itself can no longer be booked.
    app.clock.advance(Duration::hours(23));
    assert_ne!(app.day(0), date, "the booked date is history by now");
    let late_retry = create_keyed(&app, 0, 0, &date, "9f1c-retry").await.unwrap();
    assert_eq!(late_retry, first);
    assert_eq!(total_bookings(&app).await, 1);
}

#[tokio::test]
async fn concurrent_retries_make_one_booking() {
    let app = spawn_app().await;
    let attempts: Vec<_> = (0..16)
        .map(|_| {
            let allocations = app.allocations.clone();
            let request = CreateAllocationRequest {
                allocation: Some(v1::Allocation {
                    employee_id: app.employee(1),
                    vehicle_id: app.vehicle(1),
                    allocation_date: app.day(3),
                    ..Default::default()
                }),
                request_id: "same-key".into(),
            };
            tokio::spawn(async move { allocations.clone().create_allocation(request).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for attempt in attempts {
        ids.insert(attempt.await.unwrap().unwrap().into_inner().id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(total_bookings(&app).await, 1);
}

#[tokio::test]
async fn a_request_id_reused_for_another_booking_is_refused() {
    let app = spawn_app().await;
    create_keyed(&app, 0, 0, &app.day(2), "k-1").await.unwrap();
    let status = create_keyed(&app, 0, 1, &app.day(2), "k-1")
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(violated_fields(&details), ["request_id"]);
}

#[tokio::test]
async fn a_request_id_is_remembered_for_24_hours() {
    let app = spawn_app().await;
    let date = app.day(2);
    let first = create_keyed(&app, 0, 0, &date, "k-2").await.unwrap();
    // Remembered just before 24 hours: the same request is the same booking,
    // and another request under the key is refused.
    app.clock
        .advance(Duration::hours(24) - Duration::seconds(1));
    let again = create_keyed(&app, 0, 0, &date, "k-2").await.unwrap();
    assert_eq!(again.id, first.id);
    let status = create_keyed(&app, 2, 2, &date, "k-2").await.unwrap_err();
    assert_status(&status, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(total_bookings(&app).await, 1);
    app.clock.advance(Duration::seconds(2));
    // Forgotten: the key can now name a different booking.
    create_keyed(&app, 2, 2, &date, "k-2").await.unwrap();
    assert_eq!(total_bookings(&app).await, 2);
}
