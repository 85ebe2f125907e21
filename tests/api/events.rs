//! The audit trail over gRPC and REST: what is recorded, who may read it,
//! and the live stream (replay then live, resume, slow subscribers, SSE).

use std::collections::BTreeSet;
use std::time::Duration;

use tonic::Code;
use vehicle_allocation::domain::access::Role;
use vehicle_allocation::grpc::REQUEST_ID_HEADER;
use vehicle_allocation::grpc::events::EventSettings;
use vehicle_allocation::proto::v1::{
    self, DeleteAllocationRequest, ListEventsRequest, WatchEventsRequest, snapshot,
    watch_events_response::Message,
};

use crate::helpers::{AppOptions, Cred, TestApp, assert_status, spawn_app, spawn_app_with};
use crate::identity::{hs256_auth, token};

/// The next message of a stream, within a generous bound.
async fn next(
    stream: &mut tonic::Streaming<v1::WatchEventsResponse>,
) -> Option<Result<Message, tonic::Status>> {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a message within 20 s")
        .map(|m| m.map(|m| m.message.expect("a message")))
        .transpose()
}

/// The next event of a stream, skipping heartbeats.
async fn next_event(stream: &mut tonic::Streaming<v1::WatchEventsResponse>) -> v1::Event {
    loop {
        match next(stream).await {
            Some(Ok(Message::Event(event))) => return event,
            Some(Ok(Message::Heartbeat(_))) => continue,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

fn allocation(snapshot: &Option<v1::Snapshot>) -> &v1::Allocation {
    match snapshot.as_ref().and_then(|s| s.resource.as_ref()) {
        Some(snapshot::Resource::Allocation(a)) => a,
        other => panic!("expected a booking, got {other:?}"),
    }
}

#[tokio::test]
async fn a_booking_made_cancelled_over_grpc_is_listed_with_its_request_id() {
    let app = spawn_app().await;
    let start = app.newest_event().await;
    let mut request = app.admin.grpc(v1::CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: app.day(1),
            ..Default::default()
        }),
        request_id: String::new(),
    });
    request
        .metadata_mut()
        .insert(REQUEST_ID_HEADER, "audit-me-1".parse().unwrap());
    let created = app
        .allocations
        .clone()
        .create_allocation(request)
        .await
        .unwrap()
        .into_inner();
    app.allocations
        .clone()
        .delete_allocation(app.admin.grpc(DeleteAllocationRequest {
            id: created.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap();
    // Refused: no event.
    assert!(app.book(0, 0, -1).await.is_err());

    let events = app.events_after(&app.admin, start).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["allocation.created", "allocation.cancelled"]);
    let made = &events[0];
    assert_eq!(made.request_id, "audit-me-1");
    assert_eq!(made.resource, format!("allocations/{}", created.id));
    let actor = made.actor.as_ref().unwrap();
    assert_eq!(
        (actor.id.as_str(), actor.roles.as_slice()),
        ("anonymous", &["fleet_admin".to_owned()][..])
    );
    assert_eq!(made.before, None);
    assert_eq!(allocation(&made.after), &created);
    assert_eq!(allocation(&events[1].before), &created);
    assert_eq!(events[1].after, None);
    assert_eq!(made.resume_token, made.sequence.to_string());
    assert_eq!(events[1].sequence, made.sequence + 1);
}

#[tokio::test]
async fn each_role_reads_the_events_it_may() {
    let app = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        ..AppOptions::default()
    })
    .await;
    let as_ = |employee: usize, roles: &[Role]| {
        Cred::Bearer(token(&app.employee(employee), roles, app.clock_now()))
    };
    // After the fleet's events.
    let start = app.newest_event().await;
    let mine = app.book(0, 0, 1).await.unwrap();
    let others = app.book(1, 1, 1).await.unwrap();
    // A fleet change: an event only auditors and administrators see.
    app.fleet
        .clone()
        .retire_vehicle(app.admin.grpc(v1::RetireVehicleRequest {
            id: app.vehicle(5),
            ..Default::default()
        }))
        .await
        .unwrap();
    let resources = |events: Vec<v1::Event>| -> BTreeSet<String> {
        events.into_iter().map(|e| e.resource).collect()
    };
    let booking = |a: &v1::Allocation| format!("allocations/{}", a.id);
    let vehicle = format!("vehicles/{}", app.vehicle(5));
    for role in [Role::Auditor, Role::FleetAdmin] {
        let seen = resources(app.events_after(&as_(9, &[role]), start).await.unwrap());
        assert_eq!(
            seen,
            BTreeSet::from([booking(&mine), booking(&others), vehicle.clone()]),
            "{role}"
        );
    }
    let agent = resources(
        app.events_after(&as_(9, &[Role::BookingAgent]), start)
            .await
            .unwrap(),
    );
    assert_eq!(agent, BTreeSet::from([booking(&mine), booking(&others)]));
    let employee = as_(0, &[Role::Employee]);
    let own = resources(app.events_after(&employee, start).await.unwrap());
    assert_eq!(own, BTreeSet::from([booking(&mine)]));

    // Asking for more than that is refused, not silently narrowed.
    let ask = |request: ListEventsRequest| {
        let events = app.events.clone();
        let employee = employee.clone();
        async move { events.clone().list_events(employee.grpc(request)).await }
    };
    let status = ask(ListEventsRequest {
        employee_id: app.employee(1),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "NOT_OWNER");
    let status = ask(ListEventsRequest {
        kind: "vehicle.updated".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "ROLE_REQUIRED");
    let status = app
        .watch(
            &employee,
            WatchEventsRequest {
                employee_id: app.employee(1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "NOT_OWNER");
    // Bad filters name their field.
    let status = ask(ListEventsRequest {
        kind: "allocation.deleted".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_VALUE");
}

#[tokio::test]
async fn a_watch_replays_then_streams_every_change_of_twenty_writers_once_in_order() {
    const WRITERS: usize = 20;
    const CHANGES: usize = 50;
    let app = spawn_app().await;
    let start = app.newest_event().await;
    let app = std::sync::Arc::new(app);
    // Each writer books and cancels its own vehicle, over and over: every
    // call succeeds, so every call is one event.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                for change in 0..CHANGES / 2 {
                    let made = app.book(w, w, 1 + (change % 3) as i64).await.unwrap();
                    app.allocations
                        .clone()
                        .delete_allocation(app.admin.grpc(DeleteAllocationRequest {
                            id: made.id,
                            etag: String::new(),
                        }))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    // Opened while the writers write: some events are replayed, the rest
    // arrive live.
    while app.newest_event().await < start + 100 {
        tokio::task::yield_now().await;
    }
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                after_sequence: start,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut sequences = Vec::new();
    while sequences.len() < WRITERS * CHANGES {
        sequences.push(next_event(&mut stream).await.sequence);
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: Vec<i64> = (start + 1..=start + (WRITERS * CHANGES) as i64).collect();
    assert_eq!(sequences, expected, "every sequence once, in order");
    assert_eq!(app.newest_event().await, start + (WRITERS * CHANGES) as i64);
}

#[tokio::test]
async fn heartbeats_carry_the_newest_sequence_and_the_resume_token() {
    let app = spawn_app_with(AppOptions {
        events: EventSettings {
            heartbeat: Duration::from_millis(20),
            ..EventSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let first = app.book(0, 0, 1).await.unwrap();
    let second = app.book(1, 1, 1).await.unwrap();
    // Only the first booking's events pass the filter.
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                resource: format!("allocations/{}", first.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let event = next_event(&mut stream).await;
    assert_eq!(event.resource, format!("allocations/{}", first.id));
    let beat = match next(&mut stream).await {
        Some(Ok(Message::Heartbeat(beat))) => beat,
        other => panic!("expected a heartbeat, got {other:?}"),
    };
    assert_eq!(beat.latest_sequence, app.newest_event().await);
    // The second booking's event was read and skipped: the stream resumes
    // after it.
    assert!(beat.latest_sequence > event.sequence);
    assert_eq!(beat.resume_token, beat.latest_sequence.to_string());
    drop(second);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_ended_with_a_token_that_resumes_without_a_gap() {
    let app = spawn_app_with(AppOptions {
        events: EventSettings {
            watch_buffer_bytes: 4 * 1024,
            stall_timeout: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            ..EventSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let start = app.newest_event().await;
    // A client that takes little ahead of its reads: HTTP/2's smallest
    // default windows.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.channel_addr()))
        .unwrap()
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .unwrap();
    let mut stream = v1::event_service_client::EventServiceClient::new(channel)
        .watch_events(WatchEventsRequest {
            after_sequence: start,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Not read while thousands of changes are made: the transport's
    // windows fill, then the stream's outbox, which then waits longer than
    // the stall timeout.
    let app = std::sync::Arc::new(app);
    let writers: Vec<_> = (0..20)
        .map(|w| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                for change in 0..50 {
                    let made = app.book(w, w, 1 + (change % 3) as i64).await.unwrap();
                    app.allocations
                        .clone()
                        .delete_allocation(app.admin.grpc(DeleteAllocationRequest {
                            id: made.id,
                            etag: String::new(),
                        }))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let made = 2000;
    let mut received = Vec::new();
    let status = loop {
        assert!(
            received.len() < made,
            "every event arrived: the subscriber was never ended"
        );
        match next(&mut stream).await {
            Some(Ok(Message::Event(event))) => received.push(event.sequence),
            Some(Ok(Message::Heartbeat(_))) => {}
            Some(Err(status)) => break status,
            None => panic!(
                "the stream ended without a status after {} events",
                received.len()
            ),
        }
    };
    assert!(
        received.len() < made,
        "ended before the end: {} of {made}",
        received.len()
    );
    let details = assert_status(&status, Code::Aborted, "WATCH_TOO_SLOW");
    let token = details.error_info().unwrap().metadata["resume_token"].clone();
    assert_eq!(token, received.last().map_or(start, |s| *s).to_string());
    // Resuming from the token misses nothing and repeats nothing.
    let mut resumed = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                resume_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    while received.len() < made {
        received.push(next_event(&mut resumed).await.sequence);
    }
    let expected: Vec<i64> = (start + 1..=start + made as i64).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_stream_ends_on_shutdown_with_a_token_that_resumes_after_the_restart() {
    let mut app = spawn_app().await;
    // After the fleet's events.
    let start = app.newest_event().await;
    let first = app.book(0, 0, 1).await.unwrap();
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                resume_token: start.to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let seen = next_event(&mut stream).await;
    assert_eq!(allocation(&seen.after).id, first.id);
    app.begin_shutdown();
    // A last heartbeat with the resume token, then the end.
    let token = match next(&mut stream).await {
        Some(Ok(Message::Heartbeat(beat))) => beat.resume_token,
        other => panic!("expected the last heartbeat, got {other:?}"),
    };
    assert_eq!(token, seen.resume_token);
    assert!(matches!(next(&mut stream).await, None | Some(Err(_))));
    app.server()
        .await
        .unwrap()
        .expect("a clean stop with a stream open");
    let data_dir = app.stop().await;

    let app = spawn_app_with(AppOptions {
        data_dir: Some(data_dir),
        ..AppOptions::default()
    })
    .await;
    let second = app.book(1, 1, 1).await.unwrap();
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                resume_token: token,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let next_one = next_event(&mut stream).await;
    assert_eq!(next_one.sequence, seen.sequence + 1);
    assert_eq!(allocation(&next_one.after).id, second.id);
    let status = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                resume_token: "not-a-token".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_VALUE");
}

/// Reads SSE events (`id`, `event`, `data`) from a streaming response
/// until `count` are read.
async fn sse(
    response: reqwest::Response,
    count: usize,
) -> Vec<(Option<String>, Option<String>, serde_json::Value)> {
    let mut response = response;
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("SSE data within 20 s")
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let Some(data) = data {
                events.push((id, kind, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn rest_lists_events_and_streams_them_as_sse_resuming_from_last_event_id() {
    let app = spawn_app().await;
    let made: Vec<_> = book_each(&app, 3).await;
    let (status, _, body) = app
        .send(app.http.get(app.url(&format!(
            "/api/events?kind=allocation.created&vehicle_id={}",
            app.vehicle(1)
        ))))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["after"]["allocation"]["id"], made[1].id.as_str());
    assert_eq!(events[0]["before"], serde_json::Value::Null);
    assert_eq!(events[0]["actor"]["id"], "anonymous");
    let first = events[0]["sequence"].as_i64().unwrap() - 1;

    let response = app
        .http
        .get(app.url("/api/events/stream"))
        .header("last-event-id", first.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let streamed = sse(response, 2).await;
    let ids: Vec<_> = streamed
        .iter()
        .map(|(id, _, _)| id.clone().unwrap())
        .collect();
    assert_eq!(ids, [(first + 1).to_string(), (first + 2).to_string()]);
    assert_eq!(
        streamed[0].2["after"]["allocation"]["id"],
        made[1].id.as_str()
    );
    assert_eq!(streamed[1].2["kind"], "allocation.created");

    // Bad input is answered before the stream starts.
    let (status, _, body) = app
        .send(
            app.http
                .get(app.url("/api/events/stream?start_time=yesterday")),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field_violations"][0]["field"], "start_time");
    let (status, _, body) = app
        .send(app.http.get(app.url("/api/events?after_sequence=3")))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
}

/// Books vehicle i for employee i, for i in 0..n, one after another.
async fn book_each(app: &TestApp, n: usize) -> Vec<v1::Allocation> {
    let mut made = Vec::new();
    for i in 0..n {
        made.push(app.book(i, i, 1).await.unwrap());
    }
    made
}

#[tokio::test]
async fn events_older_than_the_retention_are_pruned_in_the_background() {
    let app = spawn_app_with(AppOptions {
        events: EventSettings {
            retention: chrono::Duration::days(30),
            prune_interval: Duration::from_millis(10),
            ..EventSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let visible = |app: &TestApp| {
        let events = app.events.clone();
        let admin = app.admin.clone();
        async move {
            events
                .clone()
                .list_events(admin.grpc(ListEventsRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .events
                .len()
        }
    };
    // The fleet's events date from the start, as the first booking's.
    app.book(0, 0, 1).await.unwrap();
    app.clock.advance(chrono::Duration::days(29));
    app.book(1, 1, 1).await.unwrap();
    // A month on, the fleet's and the first booking's events are past the
    // retention.
    app.clock.advance(chrono::Duration::days(2));
    let one_left = async {
        while visible(&app).await > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), one_left)
        .await
        .expect("the old event is pruned");
    let left = app.events_after(&app.admin, 0).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(allocation(&left[0].after).employee_id, app.employee(1));
}

/// Settings with small stream limits, for the tests of those limits.
fn stream_limits(per_caller: usize, total: usize) -> AppOptions {
    AppOptions {
        events: EventSettings {
            max_streams_per_caller: per_caller,
            max_streams: total,
            stall_timeout: Duration::from_millis(300),
            heartbeat: Duration::from_millis(50),
            watch_buffer_bytes: 1024,
            ..EventSettings::default()
        },
        ..AppOptions::default()
    }
}

/// Opens watches until one is accepted: a slot given back is seen by the
/// server soon after the stream that held it ends.
async fn watch_once_free(app: &TestApp) -> tonic::Streaming<v1::WatchEventsResponse> {
    for _ in 0..200 {
        match app.watch(&app.admin, WatchEventsRequest::default()).await {
            Ok(stream) => return stream,
            Err(status) => {
                assert_status(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("no slot was given back");
}

#[tokio::test]
async fn event_streams_are_capped_per_caller_and_in_all() {
    let app = spawn_app_with(stream_limits(2, 3)).await;
    let first = app.watch(&app.admin, Default::default()).await.unwrap();
    let _second = app.watch(&app.admin, Default::default()).await.unwrap();
    let status = app.watch(&app.admin, Default::default()).await.unwrap_err();
    let details = assert_status(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert!(details.retry_info().is_some());
    assert!(
        status.message().contains("MAX_WATCH_STREAMS_PER_CALLER"),
        "{status:?}"
    );
    // The same caller over SSE.
    let response = app.get("/api/events/stream").await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "TOO_MANY_STREAMS");

    // Another caller gets the server's last stream, then the server is full.
    let mut other = v1::event_service_client::EventServiceClient::new(
        app.channel_from([127, 0, 0, 2].into()).await,
    );
    let _third = other
        .watch_events(WatchEventsRequest::default())
        .await
        .expect("another caller's share is untouched");
    let status = other
        .watch_events(WatchEventsRequest::default())
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    assert!(status.message().contains("MAX_WATCH_STREAMS"), "{status:?}");

    // A stream that ends gives its slot back.
    drop(first);
    watch_once_free(&app).await;
}

#[tokio::test]
async fn a_stalled_stream_is_ended_and_gives_its_slot_back() {
    let app = spawn_app_with(stream_limits(1, 10)).await;
    app.book(0, 0, 1).await.unwrap();
    // A subscriber that never opens its window takes nothing.
    let stalled = tonic::transport::Endpoint::from_shared(format!("http://{}", app.channel_addr()))
        .unwrap()
        .initial_stream_window_size(Some(0))
        .connect()
        .await
        .unwrap();
    let _stream = v1::event_service_client::EventServiceClient::new(stalled)
        .watch_events(WatchEventsRequest::default())
        .await
        .unwrap();
    let status = app.watch(&app.admin, Default::default()).await.unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "TOO_MANY_STREAMS");
    // Ended after the stall timeout, though its connection stays open.
    watch_once_free(&app).await;
}

#[tokio::test]
async fn a_watch_from_now_skips_the_stored_events_and_refuses_a_start_as_well() {
    let app = spawn_app().await;
    book_each(&app, 2).await;
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                from_now: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let later = app.book(2, 2, 1).await.unwrap();
    let event = next_event(&mut stream).await;
    assert_eq!(event.resource, format!("allocations/{}", later.id));
    assert_eq!(event.sequence, app.newest_event().await);

    for request in [
        WatchEventsRequest {
            from_now: true,
            after_sequence: 1,
            ..Default::default()
        },
        WatchEventsRequest {
            from_now: true,
            resume_token: "1".into(),
            ..Default::default()
        },
    ] {
        let status = app.watch(&app.admin, request).await.unwrap_err();
        assert_status(&status, Code::InvalidArgument, "INVALID_VALUE");
        assert!(status.message().contains("from_now"), "{status:?}");
    }
}

#[tokio::test]
async fn sse_from_now_streams_only_what_follows_and_refuses_a_last_event_id_as_well() {
    let app = spawn_app().await;
    book_each(&app, 2).await;
    let response = app
        .http
        .get(app.url("/api/events/stream?from_now=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let later = app.book(2, 2, 1).await.unwrap();
    let streamed = sse(response, 1).await;
    assert_eq!(
        streamed[0].2["resource"],
        format!("allocations/{}", later.id)
    );
    assert_eq!(
        streamed[0].0.as_deref(),
        Some(app.newest_event().await.to_string().as_str())
    );

    let (status, _, body) = app
        .send(
            app.http
                .get(app.url("/api/events/stream?from_now=true"))
                .header("last-event-id", "1"),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field_violations"][0]["field"], "from_now");
    // A list has no "now on".
    let (status, _, body) = app
        .send(app.http.get(app.url("/api/events?from_now=true")))
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["reason"], "UNKNOWN_FIELD");
}

#[tokio::test]
async fn shutdown_cuts_an_http2_event_stream_whose_reader_stopped_reading() {
    let mut app = spawn_app_with(AppOptions {
        shutdown_timeout: Duration::from_secs(60),
        ..AppOptions::default()
    })
    .await;
    app.book(0, 0, 1).await.unwrap();
    // A reader that never opens its window: the stream's last heartbeat
    // can never reach it.
    let tcp = tokio::net::TcpStream::connect(app.http_addr())
        .await
        .unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, prost::bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/api/events/stream", app.http_addr()))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    app.begin_shutdown();
    let _ = app.server().await.unwrap();
    // Cut after a short grace, not held for the shutdown timeout.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(response);
}

#[tokio::test]
async fn a_watcher_that_hears_no_signal_still_delivers_every_event_in_order() {
    let app = spawn_app_with(AppOptions {
        events: EventSettings {
            heartbeat: Duration::from_millis(30),
            ..EventSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let start = app.newest_event().await;
    // As if the store's change stream had lost every change: only the
    // catch-up read at each heartbeat finds the events.
    app.faults.mute_event_signal();
    let mut stream = app
        .watch(
            &app.admin,
            WatchEventsRequest {
                after_sequence: start,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut booked = Vec::new();
    for e in 0..3 {
        booked.push(app.book(e, e, 1).await.unwrap());
    }
    for (expected, booking) in (start + 1..).zip(&booked) {
        // Heartbeats keep coming either way: the events must come too.
        let event = tokio::time::timeout(Duration::from_secs(20), next_event(&mut stream))
            .await
            .expect("the event within 20 s");
        assert_eq!(event.sequence, expected, "in order, none skipped");
        assert_eq!(event.resource, format!("allocations/{}", booking.id));
    }
}
