//! Hostile and careless callers: filters of thousands of entries, errors
//! whose details would outgrow a client's header limit, resume tokens past
//! the newest event, and conflicts that would show another's booking.

use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;
use vehicle_allocation::domain::access::Role;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, ListAllocationHistoryRequest, ListEventsRequest,
    RetireVehicleRequest, UpdateAllocationRequest, WatchEventsRequest,
    allocation_service_client::AllocationServiceClient, fleet_service_client::FleetServiceClient,
};

use crate::helpers::{AppOptions, Cred, TestApp, assert_status, spawn_app, spawn_app_with};
use crate::identity::{hs256_auth, token};

fn metadata(status: &tonic::Status) -> std::collections::HashMap<String, String> {
    status
        .get_error_details()
        .error_info()
        .unwrap()
        .metadata
        .clone()
}

#[tokio::test]
async fn a_kind_filter_of_thousands_of_entries_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let huge = "allocation.created,".repeat(33_000);
    let status = app
        .events
        .clone()
        .list_events(ListEventsRequest {
            kind: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "FIELD_TOO_LONG");
    assert_eq!(metadata(&status)["fields"], "kind");
    let status = app
        .watch(
            &Cred::None,
            WatchEventsRequest {
                kind: huge,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "FIELD_TOO_LONG");

    // At the cap, repeats are read once; past it, refused over REST too.
    let at_cap = vec!["allocation.created"; 32].join(",");
    app.events
        .clone()
        .list_events(ListEventsRequest {
            kind: at_cap,
            ..Default::default()
        })
        .await
        .unwrap();
    let past_cap = vec!["allocation.created"; 33].join(",");
    let (status, _, body) = app
        .send(
            app.http
                .get(app.url(&format!("/api/events?kind={past_cap}"))),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field_violations"][0]["field"], "kind");

    // Thirty-two unknown kinds are one violation.
    let unknown = (0..32).map(|i| format!("nope.{i}")).collect::<Vec<_>>();
    let status = app
        .events
        .clone()
        .list_events(ListEventsRequest {
            kind: unknown.join(","),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::InvalidArgument, "INVALID_VALUE");
    assert_eq!(details.bad_request().unwrap().field_violations.len(), 1);
    assert!(status.message().contains("(and 31 more)"), "{status:?}");
}

#[tokio::test]
async fn many_bookings_in_the_way_arrive_as_failed_precondition_within_a_strict_header_limit() {
    let app = spawn_app().await;
    for day in 1..=60 {
        app.book(0, 3, day).await.unwrap();
    }
    // grpc-java's default limit; grpcio's is twice that.
    let strict = Channel::from_shared(format!("http://{}", app.channel_addr()))
        .unwrap()
        .http2_max_header_list_size(8 * 1024)
        .connect()
        .await
        .unwrap();
    let refused = FleetServiceClient::new(strict.clone())
        .retire_vehicle(RetireVehicleRequest {
            id: app.vehicle(3),
            cancel_conflicting_bookings: false,
        })
        .await
        .unwrap_err();
    assert_status(&refused, Code::FailedPrecondition, "HAS_FUTURE_BOOKINGS");
    let info = metadata(&refused);
    assert_eq!(info["total"], "60");
    assert_eq!(info["allocation_ids"].split(',').count(), 10);

    // The whole list is the history from today on.
    let all = AllocationServiceClient::new(strict)
        .list_allocation_history(ListAllocationHistoryRequest {
            vehicle_id: app.vehicle(3),
            start_date: app.day(0),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total_size, 60);
    let listed: Vec<&str> = info["allocation_ids"].split(',').collect();
    assert!(
        listed
            .iter()
            .all(|id| all.allocations.iter().any(|a| a.id == *id))
    );
}

#[tokio::test]
async fn a_position_issued_but_not_readable_here_yet_is_worth_a_retry() {
    let app = spawn_app().await;
    app.book(0, 0, 1).await.unwrap();
    let newest = app.store.latest_event_sequence().await.unwrap() as i64;
    // As on a MongoDB replica whose new primary has not caught up with a
    // token another replica issued.
    app.faults.lag_readable_events(1);
    let request = WatchEventsRequest {
        resume_token: newest.to_string(),
        ..Default::default()
    };
    match app.watch(&Cred::None, request.clone()).await {
        Ok(_) => panic!("a stream was started past what is readable"),
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
    }
    app.faults.lag_readable_events(0);
    app.watch(&Cred::None, request).await.unwrap();
}

#[tokio::test]
async fn resume_positions_past_the_newest_event_are_refused_on_grpc_and_rest() {
    let app = spawn_app().await;
    app.book(0, 0, 1).await.unwrap();
    app.book(1, 1, 1).await.unwrap();
    let newest = app.store.latest_event_sequence().await.unwrap() as i64;
    assert!(newest > 0);
    let refused_field = |result: Result<_, tonic::Status>| match result {
        Ok(_) => panic!("a stream was started"),
        Err(status) => {
            assert_status(&status, Code::InvalidArgument, "INVALID_VALUE");
            metadata(&status)["fields"].clone()
        }
    };
    let by_token = |token: String| WatchEventsRequest {
        resume_token: token,
        ..Default::default()
    };
    let by_sequence = |after: i64| WatchEventsRequest {
        after_sequence: after,
        ..Default::default()
    };
    for token in [
        u64::MAX.to_string(),
        (i64::MAX as u64 + 1).to_string(),
        (newest + 1).to_string(),
    ] {
        let result = app.watch(&Cred::None, by_token(token)).await;
        assert_eq!(refused_field(result), "resume_token");
    }
    for after in [i64::MAX, newest + 1] {
        let result = app.watch(&Cred::None, by_sequence(after)).await;
        assert_eq!(refused_field(result), "after_sequence");
    }
    // The newest itself resumes.
    app.watch(&Cred::None, by_token(newest.to_string()))
        .await
        .unwrap();
    app.watch(&Cred::None, by_sequence(newest)).await.unwrap();

    let stream = |last_event_id: Option<String>, query: String| {
        let mut request = app.http.get(app.url(&format!("/api/events/stream{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request
    };
    let (status, _, body) = app
        .send(stream(Some(u64::MAX.to_string()), String::new()))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["field_violations"][0]["field"],
        "Last-Event-ID"
    );
    assert_eq!(body["error"]["metadata"]["fields"], "Last-Event-ID");
    let (status, _, body) = app
        .send(stream(None, format!("?resume_token={}", newest + 1)))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["field_violations"][0]["field"],
        "resume_token"
    );
    let (status, _, body) = app
        .send(stream(None, format!("?after_sequence={}", newest + 1)))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["field_violations"][0]["field"],
        "after_sequence"
    );
    let response = stream(Some(newest.to_string()), String::new())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

/// An employee's booking request, over gRPC.
fn create_request(
    app: &TestApp,
    employee: usize,
    vehicle: usize,
    day: i64,
) -> CreateAllocationRequest {
    CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            employee_id: app.employee(employee),
            vehicle_id: app.vehicle(vehicle),
            allocation_date: app.day(day),
            purpose: "trip".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

#[tokio::test]
async fn a_conflict_names_the_booking_in_the_way_only_to_who_may_read_it() {
    let app = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        ..AppOptions::default()
    })
    .await;
    let now = app.clock_now();
    let as_employee = |i: usize| Cred::Bearer(token(&app.employee(i), &[Role::Employee], now));
    let (me, other) = (as_employee(0), as_employee(1));
    let agent = Cred::Bearer(token("agent", &[Role::BookingAgent], now));
    let client = || app.allocations.clone();
    let theirs = client()
        .create_allocation(other.grpc(create_request(&app, 1, 0, 1)))
        .await
        .unwrap()
        .into_inner();

    // Another's booking: the vehicle is taken, by whom is not said.
    let refused = client()
        .create_allocation(me.grpc(create_request(&app, 0, 0, 1)))
        .await
        .unwrap_err();
    let details = assert_status(&refused, Code::AlreadyExists, "VEHICLE_ALREADY_BOOKED");
    assert!(!metadata(&refused).contains_key("allocation_id"));
    assert!(details.resource_info().is_none());
    assert!(!refused.message().contains(&theirs.id), "{refused:?}");
    // Moving a booking onto it: the same.
    let mine = client()
        .create_allocation(me.grpc(create_request(&app, 0, 2, 2)))
        .await
        .unwrap()
        .into_inner();
    let refused = client()
        .update_allocation(me.grpc(UpdateAllocationRequest {
            allocation: Some(v1::Allocation {
                id: mine.id.clone(),
                vehicle_id: app.vehicle(0),
                allocation_date: app.day(1),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["vehicle_id".into(), "allocation_date".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_status(&refused, Code::AlreadyExists, "VEHICLE_ALREADY_BOOKED");
    assert!(!metadata(&refused).contains_key("allocation_id"));

    // Their own booking, and any booking to an agent: named.
    for (cred, request) in [
        (&other, create_request(&app, 1, 0, 1)),
        (&agent, create_request(&app, 0, 0, 1)),
    ] {
        let refused = client()
            .create_allocation(cred.grpc(request))
            .await
            .unwrap_err();
        assert_status(&refused, Code::AlreadyExists, "VEHICLE_ALREADY_BOOKED");
        assert_eq!(metadata(&refused)["allocation_id"], theirs.id);
    }
    let refused = client()
        .create_allocation(other.grpc(create_request(&app, 1, 1, 1)))
        .await
        .unwrap_err();
    assert_status(&refused, Code::AlreadyExists, "EMPLOYEE_ALREADY_BOOKED");
    assert_eq!(metadata(&refused)["allocation_id"], theirs.id);

    // Over REST, the same.
    let post = |cred: &Cred, employee: usize| {
        cred.rest(app.http.post(app.url("/api/allocations")))
            .json(&json!({
                "employee_id": app.employee(employee),
                "vehicle_id": app.vehicle(0),
                "allocation_date": app.day(1),
            }))
    };
    let (status, _, body) = app.send(post(&me, 0)).await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["reason"], "VEHICLE_ALREADY_BOOKED");
    assert_eq!(body["error"]["metadata"].get("allocation_id"), None);
    assert!(!body.to_string().contains(&theirs.id), "{body}");
    let (status, _, body) = app.send(post(&other, 1)).await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["metadata"]["allocation_id"],
        Value::from(theirs.id.as_str())
    );
}
