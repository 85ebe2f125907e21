//! Acknowledged bookings, and page tokens, survive a restart.

use vehicle_allocation::proto::v1::{
    GetAllocationRequest, ListVehiclesRequest, ListVehiclesResponse,
};

use crate::helpers::{AppOptions, assert_status, spawn_app, spawn_app_with};

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

/// A page of vehicles (two a page) after `token`.
async fn vehicles_after(
    app: &crate::helpers::TestApp,
    token: &str,
) -> Result<ListVehiclesResponse, tonic::Status> {
    app.fleet
        .clone()
        .list_vehicles(ListVehiclesRequest {
            page_size: 2,
            page_token: token.into(),
            show_retired: false,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn page_tokens_outlive_a_restart_and_are_refused_when_forged() {
    let app = spawn_app().await;
    let first = vehicles_after(&app, "").await.unwrap();
    let token = first.next_page_token.clone();
    let second = vehicles_after(&app, &token).await.unwrap();
    for bad in [
        token[..token.len() - 2].to_owned(),
        {
            // One character in the middle changed.
            let mut chars: Vec<char> = token.chars().collect();
            let middle = chars.len() / 2;
            chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
            chars.into_iter().collect()
        },
        "AgMAAAAAAAAAAHZlaC0wMDAy".to_owned(),
    ] {
        let status = vehicles_after(&app, &bad).await.unwrap_err();
        assert_status(&status, tonic::Code::InvalidArgument, "INVALID_PAGE_TOKEN");
    }
    let data_dir = app.stop().await;

    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(vehicles_after(&app, &token).await.unwrap(), second);

    // Another store has another key: the token means nothing there.
    let other = spawn_app().await;
    let status = vehicles_after(&other, &token).await.unwrap_err();
    assert_status(&status, tonic::Code::InvalidArgument, "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn replicas_configured_with_one_page_token_key_accept_each_others_tokens() {
    let key = "k".repeat(32);
    let options = || AppOptions {
        page_token_key: Some(key.clone()),
        ..AppOptions::default()
    };
    let a = spawn_app_with(options()).await;
    let b = spawn_app_with(options()).await;
    let token = vehicles_after(&a, "").await.unwrap().next_page_token;
    assert_eq!(
        vehicles_after(&b, &token).await.unwrap(),
        vehicles_after(&a, &token).await.unwrap()
    );
}
