//! Acknowledged bookings survive a restart.

use vehicle_allocation::proto::v1::GetAllocationRequest;

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_restarted_service_has_the_bookings_of_the_last_one() {
    let app = spawn_app().await;
    let created = app.book(0, 0, 1).await.unwrap();
    let data_dir = app.stop().await;

    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        ..AppOptions::default()
    })
    .await;
    let found = app
        .allocations
        .clone()
        .get_allocation(GetAllocationRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found, created);
    assert!(app.book(1, 0, 1).await.is_err(), "and its rules");
}
