//! The REST gateway: every path with its statuses and headers.

use chrono::Duration;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{TestApp, json_of, spawn_app};

/// Checks the error shape and returns the error object.
#[track_caller]
pub fn assert_error(
    status: StatusCode,
    body: &Value,
    http: u16,
    grpc: &str,
    reason: &str,
) -> Value {
    assert_eq!(status.as_u16(), http, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], http, "{body}");
    assert_eq!(error["status"], grpc, "{body}");
    assert_eq!(error["reason"], reason, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["field_violations"].is_array(), "{body}");
    assert!(error["metadata"].is_object(), "{body}");
    error.clone()
}

/// The fields named in an error's violations.
pub fn fields(error: &Value) -> Vec<String> {
    error["field_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap().to_owned())
        .collect()
}

async fn post_booking(
    app: &TestApp,
    e: usize,
    v: usize,
    day: i64,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = app
        .http
        .post(app.url("/api/allocations"))
        .json(&json!({
            "employee_id": app.employee(e),
            "vehicle_id": app.vehicle(v),
            "allocation_date": app.day(day),
            "purpose": "Client visit",
        }))
        .send()
        .await
        .unwrap();
    json_of(response).await
}

#[tokio::test]
async fn post_books_and_answers_201_with_location_and_etag() {
    let app = spawn_app().await;
    let (status, headers, body) = post_booking(&app, 0, 1, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(headers[LOCATION], format!("/api/allocations/{id}"));
    assert_eq!(headers[ETAG], "\"1\"");
    assert_eq!(headers[CONTENT_TYPE], "application/json");
    assert_eq!(body["driver_id"], app.driver_of(1));
    assert_eq!(body["allocation_date"], app.day(2));
    assert_eq!(body["etag"], "1");
    assert_eq!(body["create_time"], "2026-11-26T10:00:00.000Z");

    let response = app
        .http
        .get(app.url(headers[LOCATION].to_str().unwrap()))
        .send()
        .await
        .unwrap();
    let (status, got_headers, got) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got_headers[ETAG], "\"1\"");
    assert_eq!(got, body);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_first_booking() {
    let app = spawn_app().await;
    let send = || {
        app.http
            .post(app.url("/api/allocations"))
            .header("Idempotency-Key", "order-7781")
            .json(&json!({
                "employee_id": app.employee(3),
                "vehicle_id": app.vehicle(3),
                "allocation_date": app.day(1),
            }))
            .send()
    };
    let (first_status, _, first) = json_of(send().await.unwrap()).await;
    let (again_status, _, again) = json_of(send().await.unwrap()).await;
    assert_eq!(
        (first_status, again_status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first["id"], again["id"]);
}

#[tokio::test]
async fn rule_violations_come_back_with_the_mapped_status_and_details() {
    let app = spawn_app().await;
    let (_, _, first) = post_booking(&app, 0, 1, 2).await;

    let (status, _, body) = post_booking(&app, 5, 1, 2).await;
    let error = assert_error(
        status,
        &body,
        409,
        "ALREADY_EXISTS",
        "VEHICLE_ALREADY_BOOKED",
    );
    assert_eq!(error["metadata"]["allocation_id"], first["id"]);

    let (status, _, body) = post_booking(&app, 0, 1, -3).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "DATE_IN_PAST");
    // Named as the REST body names it, in the list, the message and the
    // metadata, which carries what gRPC's ErrorInfo carries.
    assert_eq!(fields(&error), ["allocation_date"]);
    assert_eq!(error["metadata"]["fields"], "allocation_date");
    assert!(
        !error["message"].as_str().unwrap().contains("allocation."),
        "{body}"
    );

    let response = app
        .http
        .post(app.url("/api/allocations"))
        .json(&json!({"employee_id": "emp-nobody", "vehicle_id": app.vehicle(0), "allocation_date": app.day(1)}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_error(status, &body, 404, "NOT_FOUND", "EMPLOYEE_NOT_FOUND");

    let response = app
        .http
        .post(app.url("/api/allocations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "FIELD_REQUIRED");
    assert_eq!(
        fields(&error),
        ["employee_id", "vehicle_id", "allocation_date"]
    );
    assert_eq!(
        error["metadata"]["fields"],
        "employee_id,vehicle_id,allocation_date"
    );

    // A header the caller sent is named as the header.
    let response = app
        .http
        .post(app.url("/api/allocations"))
        .header("Idempotency-Key", "x".repeat(200))
        .json(&json!({"employee_id": app.employee(3), "vehicle_id": app.vehicle(3), "allocation_date": app.day(1)}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "FIELD_TOO_LONG");
    assert_eq!(fields(&error), ["Idempotency-Key"]);
    assert!(
        error["field_violations"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Idempotency-Key"),
        "{body}"
    );
}

#[tokio::test]
async fn put_changes_only_the_fields_sent_and_honours_if_match() {
    let app = spawn_app().await;
    let (_, headers, created) = post_booking(&app, 0, 1, 2).await;
    let url = app.url(headers[LOCATION].to_str().unwrap());

    let response = app
        .http
        .put(&url)
        .header(IF_MATCH, "\"1\"")
        .json(&json!({"allocation_date": app.day(5)}))
        .send()
        .await
        .unwrap();
    let (status, headers, updated) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(headers[ETAG], "\"2\"");
    assert_eq!(updated["allocation_date"], app.day(5));
    assert_eq!(updated["purpose"], created["purpose"]);
    assert_eq!(updated["vehicle_id"], created["vehicle_id"]);

    // A stale If-Match loses.
    let response = app
        .http
        .put(&url)
        .header(IF_MATCH, "\"1\"")
        .json(&json!({"purpose": "lost update"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    let error = assert_error(status, &body, 409, "ABORTED", "ETAG_MISMATCH");
    assert_eq!(error["metadata"]["current_etag"], "2");

    // null clears the purpose; a new vehicle brings its driver.
    let response = app
        .http
        .put(&url)
        .json(&json!({"purpose": null, "vehicle_id": app.vehicle(9)}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["purpose"], "");
    assert_eq!(body["driver_id"], app.driver_of(9));

    let response = app.http.put(&url).json(&json!({})).send().await.unwrap();
    let (status, _, body) = json_of(response).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT", "NOTHING_TO_UPDATE");

    let response = app
        .http
        .put(&url)
        .header(IF_MATCH, "W/\"3\"")
        .json(&json!({"purpose": "x"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_ETAG");
    assert_eq!(fields(&error), ["If-Match"]);

    let response = app
        .http
        .put(app.url("/api/allocations/no-such-id"))
        .json(&json!({"purpose": "x"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_error(status, &body, 404, "NOT_FOUND", "ALLOCATION_NOT_FOUND");
}

#[tokio::test]
async fn delete_answers_204_and_history_is_read_only() {
    let app = spawn_app().await;
    let (_, headers, _) = post_booking(&app, 0, 1, 0).await;
    let url = app.url(headers[LOCATION].to_str().unwrap());
    let (_, other_headers, _) = post_booking(&app, 1, 2, 1).await;
    let other = app.url(other_headers[LOCATION].to_str().unwrap());

    let response = app
        .http
        .delete(&other)
        .header(IF_MATCH, "\"9\"")
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_error(status, &body, 409, "ABORTED", "ETAG_MISMATCH");
    let response = app
        .http
        .delete(&other)
        .header(IF_MATCH, "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());
    let (status, _, body) = json_of(app.http.get(&other).send().await.unwrap()).await;
    assert_error(status, &body, 404, "NOT_FOUND", "ALLOCATION_NOT_FOUND");
    let (status, _, body) = json_of(app.http.delete(&other).send().await.unwrap()).await;
    assert_error(status, &body, 404, "NOT_FOUND", "ALLOCATION_NOT_FOUND");

    app.clock.advance(Duration::days(1));
    let (status, _, body) = json_of(app.http.delete(&url).send().await.unwrap()).await;
    assert_error(
        status,
        &body,
        400,
        "FAILED_PRECONDITION",
        "ALLOCATION_IS_HISTORY",
    );
    let response = app
        .http
        .put(&url)
        .json(&json!({"purpose": "x"}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(response).await;
    assert_error(
        status,
        &body,
        400,
        "FAILED_PRECONDITION",
        "ALLOCATION_IS_HISTORY",
    );
}

#[tokio::test]
async fn history_filters_pages_and_refuses_bad_parameters() {
    let app = spawn_app().await;
    for (e, v, day) in [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 3, 1)] {
        post_booking(&app, e, v, day).await;
    }
    let page = |query: String| {
        let url = app.url(&format!("/api/allocations/history?{query}"));
        let http = app.http.clone();
        async move { json_of(http.get(url).send().await.unwrap()).await }
    };
    let (status, _, first) = page(format!("employee_id={}&page_size=2", app.employee(0))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["total_size"], 3);
    let dates: Vec<_> = first["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["allocation_date"].clone())
        .collect();
    assert_eq!(dates, [json!(app.day(3)), json!(app.day(2))]);
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let (_, _, second) = page(format!(
        "employee_id={}&page_size=2&page_token={token}",
        app.employee(0)
    ))
    .await;
    assert_eq!(second["allocations"][0]["allocation_date"], app.day(1));
    assert_eq!(second["next_page_token"], "");

    let (status, _, body) =
        page(format!("start_date={}&end_date={}", app.day(1), app.day(1))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_size"], 2);

    let (status, _, body) = page("page_size=abc".into()).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_FIELD");
    assert_eq!(fields(&error), ["page_size"]);
    let (status, _, body) = page("page_size=-4".into()).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_PAGE_SIZE");
    let (status, _, body) = page("employee=emp-00001".into()).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "UNKNOWN_FIELD");
    assert_eq!(fields(&error), ["employee"]);
    let (status, _, body) = page("start_date=2026-12-09&end_date=2026-12-01".into()).await;
    assert_error(status, &body, 400, "INVALID_ARGUMENT", "INVALID_DATE_RANGE");
    let (status, _, body) = page(format!("vehicle_id=veh-0001&page_token={token}")).await;
    assert_error(
        status,
        &body,
        400,
        "INVALID_ARGUMENT",
        "PAGE_TOKEN_MISMATCH",
    );
}

#[tokio::test]
async fn employees_and_vehicles_are_listed_and_read() {
    let app = spawn_app().await;
    let get = |path: String| {
        let url = app.url(&path);
        let http = app.http.clone();
        async move { json_of(http.get(url).send().await.unwrap()).await }
    };
    let department = app.employees[0].department.clone();
    let (status, _, body) = get(format!(
        "/api/employees?department={}&page_size=3",
        department.replace(' ', "+")
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["employees"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["department"] == department.as_str())
    );
    assert!(body["total_size"].as_i64().unwrap() >= 1);

    let (status, _, body) = get(format!("/api/employees/{}", app.employee(2))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["email"], app.employees[2].email);
    let (status, _, body) = get("/api/employees/emp-x".into()).await;
    assert_error(status, &body, 404, "NOT_FOUND", "EMPLOYEE_NOT_FOUND");

    let (status, _, body) = get("/api/vehicles?page_size=10".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["vehicles"].as_array().unwrap().len(), 10);
    assert_eq!(body["total_size"], app.vehicles.len());
    assert_eq!(body["vehicles"][0]["driver"]["id"], app.driver_of(0));

    let (status, _, body) = get(format!("/api/vehicles/{}", app.vehicle(4))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["registration"], app.vehicles[4].registration);
    let (status, _, body) = get("/api/vehicles/veh-x".into()).await;
    assert_error(status, &body, 404, "NOT_FOUND", "VEHICLE_NOT_FOUND");

    post_booking(&app, 0, 0, 3).await;
    let (status, _, body) = get(format!(
        "/api/vehicles/available?date={}&page_size=500",
        app.day(3)
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_size"], app.vehicles.len() - 1);
    let (status, _, body) = get("/api/vehicles/available".into()).await;
    let error = assert_error(status, &body, 400, "INVALID_ARGUMENT", "FIELD_REQUIRED");
    assert_eq!(fields(&error), ["date"]);
}

#[tokio::test]
async fn liveness_and_readiness_follow_the_service() {
    let app = spawn_app().await;
    let (status, _, body) = json_of(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _, body) = json_of(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "SERVING");

    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest {
            service: "vehicle_allocation.v1.FleetService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    app.faults.fail_pings(true);
    while let Some(update) = watch.message().await.unwrap() {
        if update.status() == ServingStatus::NotServing {
            break;
        }
    }
    let (status, _, body) = json_of(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "NOT_SERVING");
    assert_eq!(
        body["services"]["vehicle_allocation.v1.FleetService"],
        "NOT_SERVING"
    );
    let (status, _, _) = json_of(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "alive all the same");
}
