//! The gateway's own errors, CORS, request ids, the time limit, and
//! gateway-only mode: all in the one JSON error shape.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::{Value, json};
use vehicle_allocation::app::Application;
use vehicle_allocation::config::Settings;
use vehicle_allocation::gateway::{CorsOrigins, GatewayConfig};
use vehicle_allocation::storage::StoreConfig;

use crate::helpers::{AppOptions, logged_lines, logged_lines_with, spawn_app, spawn_app_with};
use crate::rest::{assert_error, fields};

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "application/json", "{status}");
    (status, headers, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_bodies_are_refused_in_the_error_shape() {
    let app = spawn_app().await;
    let post = || app.http.post(app.url("/api/allocations"));

    let (status, _, body) = send(
        post()
            .header(CONTENT_TYPE, "application/json")
            .body("{\"employee_id\": "),
    )
    .await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT", "MALFORMED_JSON");

    let (status, _, body) = send(
        post()
            .json(&json!({"employee_id": 42, "vehicle_id": "v", "allocation_date": "2026-12-01"})),
    )
    .await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_FIELD");
    assert_eq!(fields(&error), ["employee_id"]);

    let (status, _, body) = send(post().json(&json!({"employee_id": "e", "colour": "red"}))).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "UNKNOWN_FIELD");
    assert_eq!(fields(&error), ["colour"]);

    // A query parameter given twice is refused, even when the first is a
    // default; an empty time is no bound.
    let (status, _, body) = send(
        app.http
            .get(app.url("/api/vehicles?show_retired=false&show_retired=true")),
    )
    .await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_FIELD");
    assert_eq!(fields(&error), ["show_retired"]);
    let (status, _, _) = send(app.http.get(app.url("/api/events?start_time=&end_time="))).await;
    assert_eq!(status, StatusCode::OK);

    // A name sent twice is ambiguous: refused, not read as its last value.
    let (status, _, body) = send(
        post()
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"employee_id": "e", "vehicle_id": "v", "employee_id": "f"}"#),
    )
    .await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_FIELD");
    assert_eq!(fields(&error), ["employee_id"]);

    let (status, _, body) = send(post().json(&json!(["not", "an", "object"]))).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_FIELD");
    assert_eq!(fields(&error), ["body"]);

    let (status, _, body) = send(post().header(CONTENT_TYPE, "application/json")).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT", "MISSING_BODY");

    let (status, _, body) = send(post().header(CONTENT_TYPE, "text/plain").body("hello")).await;
    assert_error(
        status,
        &body,
        415,
        "UNIMPLEMENTED",
        "UNSUPPORTED_MEDIA_TYPE",
    );

    let huge = json!({"employee_id": "e", "vehicle_id": "v", "allocation_date": "2026-12-01", "purpose": "x".repeat(70 * 1024)});
    let (status, _, body) = send(post().json(&huge)).await;
    assert_error(status, &body, 413, "RESOURCE_EXHAUSTED", "BODY_TOO_LARGE");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_in_the_error_shape() {
    let app = spawn_app().await;
    let (status, _, body) = send(app.http.get(app.url("/api/bookings"))).await;
    assert_error(status, &body, 404, "NOT_FOUND", "NO_SUCH_PATH");
    let (status, _, body) = send(app.http.get(app.url("/docs/no-such-asset.js"))).await;
    assert_error(status, &body, 404, "NOT_FOUND", "NO_SUCH_PATH");

    let (status, headers, body) = send(app.http.patch(app.url("/api/allocations/some-id"))).await;
    assert_error(status, &body, 405, "UNIMPLEMENTED", "METHOD_NOT_ALLOWED");
    let allow = headers[ALLOW].to_str().unwrap();
    for method in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(method), "{allow}");
    }
    let (status, _, body) = send(app.http.delete(app.url("/api/allocations"))).await;
    assert_error(status, &body, 405, "UNIMPLEMENTED", "METHOD_NOT_ALLOWED");
    let (status, _, body) = send(app.http.get(app.url("/api/allocations/%FF"))).await;
    assert!(status == 400 || status == 404, "{status} {body}");
    assert!(body["error"]["reason"].is_string());
}

#[tokio::test]
async fn a_slow_request_is_answered_504() {
    let mut options = AppOptions::default();
    options.gateway.request_timeout = Duration::from_millis(200);
    let app = spawn_app_with(options).await;
    let gate = app.faults.hold_creates();
    let request = app.http.post(app.url("/api/allocations")).json(&json!({
        "employee_id": app.employee(0), "vehicle_id": app.vehicle(0), "allocation_date": app.day(1)
    }));
    let (status, _, body) = send(request).await;
    assert_error(status, &body, 504, "DEADLINE_EXCEEDED", "TIMEOUT");
    gate.release.notify_one();
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/api/vehicles"))
        .header("Origin", "https://fleet.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn cors_preflight_allows_the_configured_origins_only() {
    let mut options = AppOptions::default();
    options.gateway.cors = CorsOrigins::List(vec!["https://fleet.example.com".parse().unwrap()]);
    let app = spawn_app_with(options).await;
    let preflight = |origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/api/allocations"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://fleet.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://fleet.example.com"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );

    let refused = preflight("https://evil.example.com").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let simple = app
        .http
        .get(app.url("/api/vehicles"))
        .header("Origin", "https://fleet.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://fleet.example.com"
    );
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("etag") && exposed.contains("x-request-id"),
        "{exposed}"
    );
}

#[tokio::test]
async fn cors_star_allows_any_origin_when_configured() {
    let mut options = AppOptions::default();
    options.gateway.cors = CorsOrigins::Any;
    let app = spawn_app_with(options).await;
    let response = app
        .http
        .get(app.url("/api/vehicles"))
        .header("Origin", "https://anyone.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn the_request_id_is_returned_and_logged_on_both_sides() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url(&format!("/api/employees/{}", app.employee(0))))
        .header("x-request-id", "trace-me-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-4711");
    let made_up = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = made_up.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID when the caller sends none: {id}");

    let lines = logged_lines();
    let tagged = logged_lines_with("trace-me-4711");
    assert!(
        tagged.iter().any(|l| l.contains("http request")),
        "{tagged:#?}"
    );
    assert!(
        tagged.iter().any(|l| l.contains(
            "grpc request method=/vehicle_allocation.v1.FleetService/GetEmployee request_id=trace-me-4711 principal=anonymous roles=fleet_admin code=Ok"
        )),
        "the gRPC side logs the same id: {tagged:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&id) && l.contains("http request")),
        "a made-up id is logged too"
    );
}

#[tokio::test]
async fn gateway_only_mode_serves_a_remote_grpc_server() {
    let backend = spawn_app().await;
    let grpc_addr = backend.channel_addr();
    let settings = Settings {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_upstream: Some(format!("http://{grpc_addr}")),
        gateway: GatewayConfig {
            request_timeout: Duration::from_secs(5),
            cors: CorsOrigins::None,
        },
        store: StoreConfig::Embedded {
            data_dir: "/nonexistent/never-opened".into(),
        },
        cache: Default::default(),
        policy: backend.policy,
        demo: false,
        shutdown_timeout: Duration::from_secs(5),
        health_check_interval: Duration::from_secs(1),
        auth: Default::default(),
        tls: None,
        upstream_tls: Default::default(),
        reflection: true,
        limits: Default::default(),
        integrity_check: true,
        page_token_key: None,
        events: Default::default(),
        metrics: Default::default(),
    };
    let gateway = Application::build(settings).await.unwrap();
    assert!(gateway.grpc_addr().is_none(), "no gRPC server of its own");
    let base = format!("http://{}", gateway.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run_until(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/api/allocations"))
        .json(&json!({"employee_id": backend.employee(0), "vehicle_id": backend.vehicle(0), "allocation_date": backend.day(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // With the backend gone, the gateway answers 503 without internals.
    backend.stop().await;
    let (status, _, body) = send(http.get(format!("{base}/api/vehicles"))).await;
    let error = assert_error(status, &body, 503, "UNAVAILABLE", "UPSTREAM_UNAVAILABLE");
    assert!(
        !error["message"].as_str().unwrap().contains("127.0.0.1"),
        "{error}"
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_root_redirects_to_the_documentation() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()[reqwest::header::LOCATION], "/docs/");
    // Followed, it lands on Swagger UI.
    let page = app.get("/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
}

#[tokio::test]
async fn every_json_body_ends_with_a_newline() {
    let app = spawn_app().await;
    let created = app
        .http
        .post(app.url("/api/allocations"))
        .json(&json!({"employee_id": app.employee(0), "vehicle_id": app.vehicle(0), "allocation_date": app.day(1)}))
        .send()
        .await
        .unwrap();
    let requests = [
        ("a creation", created),
        ("a page", app.get("/api/vehicles").await),
        (
            "a read",
            app.get(&format!("/api/vehicles/{}", app.vehicle(0))).await,
        ),
        (
            "a refusal",
            app.get("/api/vehicles/available?date=yesterday").await,
        ),
        ("an unknown path", app.get("/api/bookings").await),
        ("the document", app.get("/openapi.json").await),
        ("a probe", app.get("/healthz").await),
    ];
    for (what, response) in requests {
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/json",
            "{what}"
        );
        let length = response.content_length();
        let body = response.bytes().await.unwrap();
        assert!(
            body.ends_with(b"}\n"),
            "{what}: {:?}",
            String::from_utf8_lossy(&body)
        );
        assert!(!body[..body.len() - 1].contains(&b'\n'), "{what}: one line");
        if let Some(length) = length {
            assert_eq!(
                length,
                body.len() as u64,
                "{what}: Content-Length counts it"
            );
        }
        serde_json::from_slice::<Value>(&body).expect("still JSON");
    }
}
