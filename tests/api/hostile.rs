//! Hostile and careless callers: filters of thousands of entries.

use tonic::Code;
use tonic_types::StatusExt as _;
use vehicle_allocation::proto::v1::{ListEventsRequest, WatchEventsRequest};

use crate::helpers::{Cred, assert_status, spawn_app};

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
