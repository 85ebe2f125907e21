//! `/metrics` after a known sequence of calls: it parses, passes
//! `promtool check metrics`, and every counter moved by exactly what the
//! calls should have moved it.

use std::io::Write as _;
use std::process::{Command, Stdio};

use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use reqwest::StatusCode;
use reqwest::header::IF_MATCH;
use vehicle_allocation::config::MetricsSettings;
use vehicle_allocation::proto::v1::{self, GetAllocationRequest, UpdateAllocationRequest};

use crate::helpers::{AppOptions, TestApp, spawn_app_with};
use crate::{SERIAL, collector};

type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

const ALLOCATIONS: &str = "vehicle_allocation.v1.AllocationService";

async fn metered_app(options: AppOptions) -> TestApp {
    spawn_app_with(AppOptions {
        metrics: MetricsSettings {
            enabled: true,
            addr: Some("127.0.0.1:0".parse().unwrap()),
        },
        ..options
    })
    .await
}

/// `/metrics` from the metrics listener (whose own requests count nowhere).
async fn scrape(app: &TestApp) -> String {
    let addr = app.metrics_addr.expect("METRICS_ADDR is served");
    let response = app
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

fn parse(text: &str) -> Exposition {
    openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

/// The sum over `family`'s series that carry all of `labels`: a counter's
/// or gauge's value, a histogram's count. 0 when there is none.
fn value(scrape: &Exposition, family: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(family) = scrape.families.get(family) else {
        return 0.0;
    };
    family
        .iter_samples()
        .filter(|sample| {
            let set = sample.get_labelset().unwrap();
            labels
                .iter()
                .all(|(name, want)| set.get_label_value(name) == Some(want))
        })
        .map(|sample| match &sample.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(g) | PrometheusValue::Unknown(g) => g.as_f64(),
            PrometheusValue::Histogram(h) => h.count.unwrap_or(0) as f64,
            PrometheusValue::Summary(s) => s.count.unwrap_or(0) as f64,
        })
        .sum()
}

/// `promtool check metrics` on `text`; skipped (loudly) where promtool is
/// not installed, except under CI.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: promtool check metrics ({error}); install Debian's prometheus");
            return;
        }
        Err(error) => panic!("promtool is needed under CI: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn get_allocation(app: &TestApp, id: &str) -> Result<v1::Allocation, tonic::Status> {
    app.allocations
        .clone()
        .get_allocation(GetAllocationRequest { id: id.into() })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn every_counter_moves_by_exactly_what_the_calls_did() {
    let _turn = SERIAL.lock().await;
    collector();
    let app = metered_app(AppOptions::default()).await;
    let before = parse(&scrape(&app).await);

    // gRPC: a booking, a refused one, and the booking read twice (a miss,
    // then a hit).
    let booked = app.book(0, 1, 1).await.unwrap();
    let refused = app.book(2, 1, 1).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    get_allocation(&app, &booked.id).await.unwrap();
    get_allocation(&app, &booked.id).await.unwrap();
    // REST: the same booking (a hit), a path that does not exist, and a
    // cancel.
    let path = format!("/api/allocations/{}", booked.id);
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/nothing-here").await.status(),
        StatusCode::NOT_FOUND
    );
    let cancelled = app
        .http
        .delete(app.url(&path))
        .header(IF_MATCH, format!("\"{}\"", booked.etag))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    // gRPC again: the cancelled booking is gone (a miss: the cancel
    // retired its entry), and another booking is changed.
    let gone = get_allocation(&app, &booked.id).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let mut other = app.book(3, 4, 2).await.unwrap();
    other.purpose = "changed".into();
    app.allocations
        .clone()
        .update_allocation(UpdateAllocationRequest {
            allocation: Some(other),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["purpose".into()],
            }),
        })
        .await
        .unwrap();

    let text = scrape(&app).await;
    promtool_check(&text);
    let after = parse(&text);
    let moved = |family: &str, labels: &[(&str, &str)]| {
        value(&after, family, labels) - value(&before, family, labels)
    };
    let grpc = |method: &'static str| {
        [
            ("grpc_service", ALLOCATIONS),
            ("grpc_method", method),
            ("grpc_type", "unary"),
        ]
    };
    let handled = |method: &'static str, code: &'static str| {
        let [service, method, kind] = grpc(method);
        moved(
            "grpc_server_handled_total",
            &[service, method, kind, ("grpc_code", code)],
        )
    };
    // Every call of the gateway is a gRPC call too.
    let expected_grpc = [
        ("CreateAllocation", 3.0),
        ("GetAllocation", 4.0),
        ("DeleteAllocation", 1.0),
        ("UpdateAllocation", 1.0),
    ];
    for (method, calls) in expected_grpc {
        assert_eq!(
            moved("grpc_server_started_total", &grpc(method)),
            calls,
            "{method} started"
        );
        assert_eq!(
            moved("grpc_server_handling_seconds", &grpc(method)),
            calls,
            "{method} timed"
        );
    }
    assert_eq!(handled("CreateAllocation", "OK"), 2.0);
    assert_eq!(handled("CreateAllocation", "AlreadyExists"), 1.0);
    assert_eq!(handled("GetAllocation", "OK"), 3.0);
    assert_eq!(handled("GetAllocation", "NotFound"), 1.0);
    assert_eq!(handled("DeleteAllocation", "OK"), 1.0);
    assert_eq!(handled("UpdateAllocation", "OK"), 1.0);

    let route = "/api/allocations/{id}";
    let http = |method: &'static str, route: &'static str, status: &'static str| {
        let labels = [("method", method), ("route", route), ("status", status)];
        let requests = moved("http_server_requests_total", &labels);
        assert_eq!(
            moved("http_server_request_duration_seconds", &labels),
            requests,
            "{method} {route} {status} timed"
        );
        requests
    };
    assert_eq!(http("GET", route, "200"), 1.0);
    assert_eq!(http("GET", "unmatched", "404"), 1.0);
    assert_eq!(http("DELETE", route, "204"), 1.0);
    assert_eq!(
        moved("http_server_requests_total", &[]),
        3.0,
        "nothing else"
    );

    assert_eq!(moved("vehicle_allocation_bookings_created_total", &[]), 2.0);
    assert_eq!(moved("vehicle_allocation_bookings_changed_total", &[]), 1.0);
    assert_eq!(
        moved("vehicle_allocation_bookings_cancelled_total", &[]),
        1.0
    );
    let refusals = |reason: &str| moved("vehicle_allocation_refusals_total", &[("reason", reason)]);
    assert_eq!(refusals("VEHICLE_ALREADY_BOOKED"), 1.0);
    assert_eq!(refusals("NO_SUCH_PATH"), 1.0);
    assert_eq!(refusals("ALLOCATION_NOT_FOUND"), 1.0);
    assert_eq!(
        moved("vehicle_allocation_refusals_total", &[]),
        3.0,
        "nothing else"
    );

    let cache = |result: &str| {
        moved(
            "vehicle_allocation_cache_requests_total",
            &[
                ("backend", "memory"),
                ("kind", "allocation"),
                ("result", result),
            ],
        )
    };
    assert_eq!(cache("hit"), 2.0);
    assert_eq!(cache("miss"), 2.0);
    assert_eq!(cache("error") + cache("bypass"), 0.0);

    let store = |operation: &str| {
        moved(
            "vehicle_allocation_store_operation_duration_seconds",
            &[("backend", "sqlite"), ("operation", operation)],
        )
    };
    assert_eq!(store("create_allocation"), 3.0);
    assert_eq!(store("get_allocation"), 2.0, "the misses only");
    assert_eq!(store("delete_allocation"), 1.0);
    assert_eq!(store("update_allocation"), 1.0);
    assert!(
        moved("vehicle_allocation_store_writer_batch_size", &[]) >= 5.0,
        "each write went through a group commit"
    );
    assert_eq!(
        value(
            &after,
            "vehicle_allocation_health_status",
            &[("service", "server")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "vehicle_allocation_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retried_create_counts_one_booking() {
    let _turn = SERIAL.lock().await;
    collector();
    let app = metered_app(AppOptions::default()).await;
    let before = parse(&scrape(&app).await);
    let request = || {
        app.admin.grpc(v1::CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: app.employee(0),
                vehicle_id: app.vehicle(0),
                allocation_date: app.day(1),
                ..Default::default()
            }),
            request_id: "0d3c5a1e-6b7f-4c2a-9e8d-1f2a3b4c5d6e".into(),
        })
    };
    let made = app.allocations.clone().create_allocation(request()).await;
    let again = app.allocations.clone().create_allocation(request()).await;
    assert_eq!(made.unwrap().into_inner(), again.unwrap().into_inner());
    let after = parse(&scrape(&app).await);
    let created =
        |scrape: &Exposition| value(scrape, "vehicle_allocation_bookings_created_total", &[]);
    assert_eq!(created(&after) - created(&before), 1.0);
}

#[tokio::test]
async fn metrics_stay_off_the_public_port_once_callers_authenticate() {
    let _turn = SERIAL.lock().await;
    collector();
    let open = metered_app(AppOptions::default()).await;
    let public = open.get("/metrics").await;
    assert_eq!(public.status(), StatusCode::OK);
    assert!(
        public
            .text()
            .await
            .unwrap()
            .contains("grpc_server_started_total")
    );
    open.stop().await;

    let guarded = metered_app(AppOptions {
        auth: crate::identity::hs256_auth(),
        ..AppOptions::default()
    })
    .await;
    assert_eq!(
        guarded.get("/metrics").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(scrape(&guarded).await.contains("grpc_server_started_total"));
    guarded.stop().await;
}
