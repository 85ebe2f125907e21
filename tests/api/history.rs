//! The history report: filters, order, and page tokens.

use std::collections::HashSet;

use tonic::Code;
use vehicle_allocation::proto::v1::{
    DeleteAllocationRequest, ListAllocationHistoryRequest, ListAllocationHistoryResponse,
};
use vehicle_allocation::seed::{self, SeedPlan};

use crate::helpers::{FLEET, TestApp, assert_status, spawn_app, violated_fields};

async fn list(
    app: &TestApp,
    request: ListAllocationHistoryRequest,
) -> Result<ListAllocationHistoryResponse, tonic::Status> {
    app.allocations
        .clone()
        .list_allocation_history(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Loads `count` seeded bookings (history and future) into the app.
async fn with_bookings(app: &TestApp, count: usize) -> Vec<vehicle_allocation::domain::Allocation> {
    let plan = SeedPlan {
        allocations: count,
        ..FLEET
    };
    let bookings = seed::all_bookings(&plan, &app.policy, crate::helpers::start_time()).unwrap();
    app.insert(bookings.clone()).await;
    bookings
}

#[tokio::test]
async fn history_is_newest_first_and_filters_combine() {
    let app = spawn_app().await;
    let bookings = with_bookings(&app, 600).await;
    let sample = &bookings[300];

    let page = list(
        &app,
        ListAllocationHistoryRequest {
            employee_id: sample.employee_id.clone(),
            page_size: 500,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut expected: Vec<_> = bookings
        .iter()
        .filter(|b| b.employee_id == sample.employee_id)
        .collect();
    expected.sort_by(|a, b| (b.date, &b.id).cmp(&(a.date, &a.id)));
    let got: Vec<_> = page.allocations.iter().map(|a| a.id.clone()).collect();
    assert_eq!(
        got,
        expected.iter().map(|b| b.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(page.total_size, expected.len() as i64);
    assert!(page.next_page_token.is_empty());

    let day = sample.date.to_string();
    let page = list(
        &app,
        ListAllocationHistoryRequest {
            vehicle_id: sample.vehicle_id.clone(),
            driver_id: sample.driver_id.clone(),
            start_date: day.clone(),
            end_date: day.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.total_size, 1);
    assert_eq!(page.allocations[0].id, sample.id);
    assert_eq!(page.allocations[0].allocation_date, day);
}

#[tokio::test]
async fn page_size_defaults_to_50_and_is_capped_at_500() {
    let app = spawn_app().await;
    with_bookings(&app, 700).await;
    let page = list(&app, ListAllocationHistoryRequest::default())
        .await
        .unwrap();
    assert_eq!(page.allocations.len(), 50);
    assert_eq!(page.total_size, 700);
    assert!(!page.next_page_token.is_empty());
    let page = list(
        &app,
        ListAllocationHistoryRequest {
            page_size: 10_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.allocations.len(), 500);

    let status = list(
        &app,
        ListAllocationHistoryRequest {
            page_size: -1,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "INVALID_PAGE_SIZE");
    assert_eq!(violated_fields(&details), ["page_size"]);
}

#[tokio::test]
async fn bad_filters_are_invalid_argument_naming_the_field() {
    let app = spawn_app().await;
    let status = list(
        &app,
        ListAllocationHistoryRequest {
            start_date: "2026-02-30".into(),
            end_date: "next week".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "INVALID_DATE");
    assert_eq!(violated_fields(&details), ["start_date", "end_date"]);

    let status = list(
        &app,
        ListAllocationHistoryRequest {
            start_date: "2026-12-02".into(),
            end_date: "2026-12-01".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "INVALID_DATE_RANGE");
    assert_eq!(violated_fields(&details), ["start_date"]);

    // Id filters are held to the length of an id (they become cache keys):
    // 128 characters pass, 129 do not.
    list(
        &app,
        ListAllocationHistoryRequest {
            employee_id: "e".repeat(128),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let long = "x".repeat(129);
    let status = list(
        &app,
        ListAllocationHistoryRequest {
            employee_id: long.clone(),
            vehicle_id: long.clone(),
            driver_id: long,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(
        violated_fields(&details),
        ["employee_id", "vehicle_id", "driver_id"]
    );
    let status = app
        .fleet
        .clone()
        .list_employees(vehicle_allocation::proto::v1::ListEmployeesRequest {
            department: "d".repeat(129),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(violated_fields(&details), ["department"]);
}

#[tokio::test]
async fn a_page_token_only_works_with_the_filters_it_was_issued_for() {
    let app = spawn_app().await;
    let bookings = with_bookings(&app, 300).await;
    let first = list(
        &app,
        ListAllocationHistoryRequest {
            vehicle_id: bookings[0].vehicle_id.clone(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let status = list(
        &app,
        ListAllocationHistoryRequest {
            vehicle_id: bookings[1].vehicle_id.clone(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "PAGE_TOKEN_MISMATCH");
    assert_eq!(violated_fields(&details), ["page_token"]);

    let status = list(
        &app,
        ListAllocationHistoryRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_PAGE_TOKEN");

    // A different page size with the same filters is fine.
    list(
        &app,
        ListAllocationHistoryRequest {
            vehicle_id: bookings[0].vehicle_id.clone(),
            page_size: 5,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn walking_pages_while_others_write_never_skips_or_repeats() {
    let app = spawn_app().await;
    let existing = with_bookings(&app, 400).await;
    let mut seen = Vec::new();
    let mut cancelled = HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = list(
            &app,
            ListAllocationHistoryRequest {
                page_size: 30,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        pages += 1;
        assert!(
            page.total_size >= 350,
            "total follows the writes: {}",
            page.total_size
        );
        seen.extend(page.allocations.iter().map(|a| a.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        // Others book ahead of and behind the walk, and cancel a booking
        // the walk has not reached yet.
        let _ = app
            .book(45 + pages % 15, pages % 45, 80 - pages as i64)
            .await;
        let _ = app.book(45 + pages % 15, (pages + 7) % 45, 1).await;
        if let Some(victim) = existing
            .iter()
            .find(|b| b.date >= app.today() && !seen.contains(&b.id) && !cancelled.contains(&b.id))
        {
            app.allocations
                .clone()
                .delete_allocation(DeleteAllocationRequest {
                    id: victim.id.clone(),
                    etag: String::new(),
                })
                .await
                .unwrap();
            cancelled.insert(victim.id.clone());
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no booking is served twice");
    let missed: Vec<_> = existing
        .iter()
        .filter(|b| !cancelled.contains(&b.id) && !unique.contains(&b.id))
        .collect();
    assert!(missed.is_empty(), "missed {missed:?}");
    assert!(pages > 10);
    assert!(!cancelled.is_empty());
}

#[tokio::test]
async fn history_lists_what_was_booked_through_the_api() {
    let app = spawn_app().await;
    let a = app.book(0, 0, 1).await.unwrap();
    let b = app.book(1, 1, 3).await.unwrap();
    let c = app.book(2, 2, 3).await.unwrap();
    let page = list(&app, ListAllocationHistoryRequest::default())
        .await
        .unwrap();
    let mut newest_first = vec![b.clone(), c.clone()];
    newest_first.sort_by(|x, y| y.id.cmp(&x.id));
    newest_first.push(a);
    assert_eq!(page.allocations, newest_first);
    assert_eq!(page.total_size, 3);
}
