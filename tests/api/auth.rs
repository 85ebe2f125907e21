//! Identity and roles: who may call what, over gRPC and over REST, and every
//! way a credential is refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::Code;
use vehicle_allocation::app::{AppError, Application};
use vehicle_allocation::auth::AuthSettings;
use vehicle_allocation::auth::jwt::KeySource;
use vehicle_allocation::auth::rate::RateLimit;
use vehicle_allocation::domain::access::Role;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, DeleteAllocationRequest, GetAllocationRequest,
    GetEmployeeRequest, GetVehicleRequest, ListAllocationHistoryRequest,
    ListAvailableVehiclesRequest, ListEmployeesRequest, ListVehiclesRequest,
    UpdateAllocationRequest,
};

use crate::helpers::{
    AppOptions, Cred, TestApp, assert_status, logged_lines, logged_lines_with, spawn_app_with,
};
use crate::identity::{self, JwkPair, SECRET, claims, hs256_auth, jwks, key_entry, sign, token};

/// The employee the matrix's `employee` caller is, and someone else.
const ME: usize = 0;
const OTHER: usize = 1;

async fn hs256_app() -> TestApp {
    spawn_app_with(AppOptions {
        auth: hs256_auth(),
        ..AppOptions::default()
    })
    .await
}

/// The calls of the matrix, in the order they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    CreateOwn,
    CreateOthers,
    GetOwn,
    GetOthers,
    GetMissing,
    UpdateOwn,
    UpdateOthers,
    HistoryAll,
    HistoryOwn,
    HistoryOthers,
    ListEmployees,
    GetEmployee,
    ListVehicles,
    GetVehicle,
    ListAvailable,
    DeleteOwn,
    DeleteOthers,
}

const CALLS: [Call; 17] = [
    Call::CreateOwn,
    Call::CreateOthers,
    Call::GetOwn,
    Call::GetOthers,
    Call::GetMissing,
    Call::UpdateOwn,
    Call::UpdateOthers,
    Call::HistoryAll,
    Call::HistoryOwn,
    Call::HistoryOthers,
    Call::ListEmployees,
    Call::GetEmployee,
    Call::ListVehicles,
    Call::GetVehicle,
    Call::ListAvailable,
    Call::DeleteOwn,
    Call::DeleteOthers,
];

/// What a cell expects: success, or a code with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Denied(Code, &'static str),
}

const OK: Expect = Expect::Ok;
const NOT_OWNER: Expect = Expect::Denied(Code::PermissionDenied, "NOT_OWNER");
const ROLE: Expect = Expect::Denied(Code::PermissionDenied, "ROLE_REQUIRED");
const MISSING: Expect = Expect::Denied(Code::NotFound, "ALLOCATION_NOT_FOUND");
const NO_CREDENTIALS: Expect = Expect::Denied(Code::Unauthenticated, "CREDENTIALS_MISSING");

/// Each row: a caller (by roles; `None` sends no credentials) and the
/// outcome of each call in [`CALLS`].
fn matrix() -> Vec<(Option<&'static [Role]>, [Expect; 17])> {
    vec![
        (
            Some(&[Role::Employee]),
            [
                OK, NOT_OWNER, OK, NOT_OWNER, NOT_OWNER, OK, NOT_OWNER, OK, OK, NOT_OWNER, OK, OK,
                OK, OK, OK, OK, NOT_OWNER,
            ],
        ),
        (
            Some(&[Role::BookingAgent]),
            [
                OK, OK, OK, OK, MISSING, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK,
            ],
        ),
        (
            Some(&[Role::Auditor]),
            [
                ROLE, ROLE, OK, OK, MISSING, ROLE, ROLE, OK, OK, OK, OK, OK, OK, OK, OK, ROLE, ROLE,
            ],
        ),
        (
            Some(&[Role::FleetAdmin]),
            [
                OK, OK, OK, OK, MISSING, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK,
            ],
        ),
        (Some(&[]), [ROLE; 17]),
        (None, [NO_CREDENTIALS; 17]),
    ]
}

/// A fresh app with one booking of ME's and one of OTHER's, tomorrow.
async fn matrix_app() -> (TestApp, String, String) {
    let app = hs256_app().await;
    let own = app.book(ME, 0, 1).await.unwrap().id;
    let others = app.book(OTHER, 1, 1).await.unwrap().id;
    (app, own, others)
}

fn caller(app: &TestApp, roles: Option<&[Role]>) -> Cred {
    match roles {
        Some(roles) => Cred::Bearer(token(&app.employee(ME), roles, app.clock_now())),
        None => Cred::None,
    }
}

/// What a successful call returned that the matrix checks besides its code.
#[derive(Debug, Default)]
struct Seen {
    /// Employees whose bookings a history call listed.
    history_employees: BTreeSet<String>,
    /// Whether a vehicle's driver came with a licence number.
    licence: Option<bool>,
}

async fn grpc_call(
    app: &TestApp,
    cred: &Cred,
    call: Call,
    own: &str,
    others: &str,
) -> Result<Seen, tonic::Status> {
    let mut allocations = app.allocations.clone();
    let mut fleet = app.fleet.clone();
    let mut seen = Seen::default();
    let create = |employee: usize, vehicle: usize| CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            employee_id: app.employee(employee),
            vehicle_id: app.vehicle(vehicle),
            allocation_date: app.day(2),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let update = |id: &str| UpdateAllocationRequest {
        allocation: Some(v1::Allocation {
            id: id.to_owned(),
            purpose: "changed".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["purpose".into()],
        }),
    };
    let history = |employee: Option<usize>| ListAllocationHistoryRequest {
        employee_id: employee.map(|e| app.employee(e)).unwrap_or_default(),
        ..Default::default()
    };
    let licence = |vehicles: &[v1::Vehicle]| {
        Some(
            vehicles
                .iter()
                .all(|v| !v.driver.as_ref().unwrap().license_number.is_empty()),
        )
    };
    match call {
        Call::CreateOwn => drop(
            allocations
                .create_allocation(cred.grpc(create(ME, 2)))
                .await?,
        ),
        Call::CreateOthers => drop(
            allocations
                .create_allocation(cred.grpc(create(OTHER, 3)))
                .await?,
        ),
        Call::GetOwn | Call::GetOthers | Call::GetMissing => {
            let id = match call {
                Call::GetOwn => own.to_owned(),
                Call::GetOthers => others.to_owned(),
                _ => "01900000-0000-7000-8000-000000000000".to_owned(),
            };
            allocations
                .get_allocation(cred.grpc(GetAllocationRequest { id }))
                .await?;
        }
        Call::UpdateOwn => drop(
            allocations
                .update_allocation(cred.grpc(update(own)))
                .await?,
        ),
        Call::UpdateOthers => drop(
            allocations
                .update_allocation(cred.grpc(update(others)))
                .await?,
        ),
        Call::HistoryAll | Call::HistoryOwn | Call::HistoryOthers => {
            let filter = match call {
                Call::HistoryAll => None,
                Call::HistoryOwn => Some(ME),
                _ => Some(OTHER),
            };
            let page = allocations
                .list_allocation_history(cred.grpc(history(filter)))
                .await?
                .into_inner();
            seen.history_employees = page
                .allocations
                .into_iter()
                .map(|a| a.employee_id)
                .collect();
        }
        Call::ListEmployees => {
            let page = fleet
                .list_employees(cred.grpc(ListEmployeesRequest::default()))
                .await?
                .into_inner();
            assert!(page.employees.iter().all(|e| !e.email.is_empty()));
        }
        Call::GetEmployee => {
            let employee = fleet
                .get_employee(cred.grpc(GetEmployeeRequest {
                    id: app.employee(OTHER),
                }))
                .await?
                .into_inner();
            assert!(
                !employee.email.is_empty(),
                "work e-mail goes to every caller"
            );
        }
        Call::ListVehicles => {
            let page = fleet
                .list_vehicles(cred.grpc(ListVehiclesRequest::default()))
                .await?
                .into_inner();
            seen.licence = licence(&page.vehicles);
        }
        Call::GetVehicle => {
            let vehicle = fleet
                .get_vehicle(cred.grpc(GetVehicleRequest { id: app.vehicle(0) }))
                .await?
                .into_inner();
            assert!(!vehicle.driver.as_ref().unwrap().phone.is_empty());
            seen.licence = licence(&[vehicle]);
        }
        Call::ListAvailable => {
            let page = fleet
                .list_available_vehicles(cred.grpc(ListAvailableVehiclesRequest {
                    date: app.day(1),
                    ..Default::default()
                }))
                .await?
                .into_inner();
            seen.licence = licence(&page.vehicles);
        }
        Call::DeleteOwn | Call::DeleteOthers => {
            let id = if call == Call::DeleteOwn { own } else { others };
            allocations
                .delete_allocation(cred.grpc(DeleteAllocationRequest {
                    id: id.to_owned(),
                    etag: String::new(),
                }))
                .await?;
        }
    }
    Ok(seen)
}

/// Checks what the caller saw of a successful call: only their own history
/// for an employee, licence numbers only for fleet_admin and auditor.
fn check_seen(app: &TestApp, roles: &[Role], call: Call, seen: &Seen) {
    let privileged_reader = roles.contains(&Role::Auditor) || roles.contains(&Role::FleetAdmin);
    if let Some(licence) = seen.licence {
        assert_eq!(
            licence, privileged_reader,
            "{roles:?} licence numbers in {call:?}"
        );
    }
    if matches!(call, Call::HistoryAll | Call::HistoryOwn) {
        let expected: BTreeSet<String> = if roles == [Role::Employee] || call == Call::HistoryOwn {
            [app.employee(ME)].into()
        } else {
            [app.employee(ME), app.employee(OTHER)].into()
        };
        assert_eq!(seen.history_employees, expected, "{roles:?} {call:?}");
    }
}

/// The roles a ROLE_REQUIRED refusal of `call` names.
fn roles_that_would_do(call: Call) -> &'static str {
    match call {
        Call::CreateOwn
        | Call::CreateOthers
        | Call::UpdateOwn
        | Call::UpdateOthers
        | Call::DeleteOwn
        | Call::DeleteOthers => "employee,booking_agent,fleet_admin",
        _ => "employee,booking_agent,auditor,fleet_admin",
    }
}

/// A refused change leaves the booking as it was.
async fn assert_untouched(app: &TestApp, id: &str, purpose: &str) {
    let found = app
        .allocations
        .clone()
        .get_allocation(app.admin.grpc(GetAllocationRequest { id: id.to_owned() }))
        .await
        .expect("the booking is still there")
        .into_inner();
    assert_eq!(found.purpose, purpose);
    assert_eq!(found.etag, "1");
}

#[tokio::test]
async fn the_role_matrix_over_grpc() {
    for (roles, expected) in matrix() {
        let (app, own, others) = matrix_app().await;
        let cred = caller(&app, roles);
        for (call, expect) in CALLS.into_iter().zip(expected) {
            let outcome = grpc_call(&app, &cred, call, &own, &others).await;
            match (expect, outcome) {
                (Expect::Ok, Ok(seen)) => check_seen(&app, roles.unwrap(), call, &seen),
                (Expect::Denied(code, reason), Err(status)) => {
                    let details = assert_status(&status, code, reason);
                    if reason == "ROLE_REQUIRED" {
                        let info = details.error_info().unwrap();
                        assert_eq!(
                            info.metadata["roles"],
                            roles_that_would_do(call),
                            "{call:?}"
                        );
                    }
                }
                (expect, outcome) => {
                    panic!("{roles:?} {call:?}: expected {expect:?}, got {outcome:?}")
                }
            }
        }
        if expected[CALLS.iter().position(|c| *c == Call::DeleteOthers).unwrap()] != OK {
            assert_untouched(&app, &others, &format!("trip {OTHER}-1")).await;
        }
    }
}

/// The REST request for `call`.
fn rest_request(
    app: &TestApp,
    call: Call,
    own: &str,
    others: &str,
) -> (Method, String, Option<Value>) {
    let create = |employee: usize, vehicle: usize| {
        json!({"employee_id": app.employee(employee), "vehicle_id": app.vehicle(vehicle),
               "allocation_date": app.day(2)})
    };
    let id = |call: Call| match call {
        Call::GetOwn | Call::UpdateOwn | Call::DeleteOwn => own.to_owned(),
        Call::GetOthers | Call::UpdateOthers | Call::DeleteOthers => others.to_owned(),
        _ => "01900000-0000-7000-8000-000000000000".to_owned(),
    };
    match call {
        Call::CreateOwn => (Method::POST, "/api/allocations".into(), Some(create(ME, 2))),
        Call::CreateOthers => (
            Method::POST,
            "/api/allocations".into(),
            Some(create(OTHER, 3)),
        ),
        Call::GetOwn | Call::GetOthers | Call::GetMissing => {
            (Method::GET, format!("/api/allocations/{}", id(call)), None)
        }
        Call::UpdateOwn | Call::UpdateOthers => (
            Method::PUT,
            format!("/api/allocations/{}", id(call)),
            Some(json!({"purpose": "changed"})),
        ),
        Call::DeleteOwn | Call::DeleteOthers => (
            Method::DELETE,
            format!("/api/allocations/{}", id(call)),
            None,
        ),
        Call::HistoryAll => (Method::GET, "/api/allocations/history".into(), None),
        Call::HistoryOwn => (
            Method::GET,
            format!("/api/allocations/history?employee_id={}", app.employee(ME)),
            None,
        ),
        Call::HistoryOthers => (
            Method::GET,
            format!(
                "/api/allocations/history?employee_id={}",
                app.employee(OTHER)
            ),
            None,
        ),
        Call::ListEmployees => (Method::GET, "/api/employees".into(), None),
        Call::GetEmployee => (
            Method::GET,
            format!("/api/employees/{}", app.employee(OTHER)),
            None,
        ),
        Call::ListVehicles => (Method::GET, "/api/vehicles".into(), None),
        Call::GetVehicle => (
            Method::GET,
            format!("/api/vehicles/{}", app.vehicle(0)),
            None,
        ),
        Call::ListAvailable => (
            Method::GET,
            format!("/api/vehicles/available?date={}", app.day(1)),
            None,
        ),
    }
}

/// Whether every vehicle in a REST answer came with a licence number.
fn rest_licence(body: &Value) -> Option<bool> {
    let vehicles: Vec<&Value> = match body.get("vehicles") {
        Some(Value::Array(list)) => list.iter().collect(),
        _ if body.get("driver").is_some() => vec![body],
        _ => return None,
    };
    Some(
        vehicles
            .iter()
            .all(|v| v["driver"].get("license_number").is_some()),
    )
}

#[tokio::test]
async fn the_role_matrix_over_rest() {
    for (roles, expected) in matrix() {
        let (app, own, others) = matrix_app().await;
        let cred = caller(&app, roles);
        for (call, expect) in CALLS.into_iter().zip(expected) {
            let (method, path, body) = rest_request(&app, call, &own, &others);
            let mut request = cred.rest(app.http.request(method, app.url(&path)));
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let www_authenticate = response.headers().get("www-authenticate").cloned();
            let body: Value = if status == StatusCode::NO_CONTENT {
                Value::Null
            } else {
                response.json().await.unwrap()
            };
            match expect {
                Expect::Ok => {
                    assert!(status.is_success(), "{roles:?} {call:?}: {status} {body}");
                    let history_employees = body["allocations"]
                        .as_array()
                        .map(|list| {
                            list.iter()
                                .map(|a| a["employee_id"].as_str().unwrap().to_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    let seen = Seen {
                        history_employees,
                        licence: rest_licence(&body),
                    };
                    check_seen(&app, roles.unwrap(), call, &seen);
                }
                Expect::Denied(code, reason) => {
                    let http = match code {
                        Code::PermissionDenied => 403,
                        Code::Unauthenticated => 401,
                        Code::NotFound => 404,
                        other => panic!("unmapped {other:?}"),
                    };
                    assert_eq!(status.as_u16(), http, "{roles:?} {call:?}: {body}");
                    assert_eq!(
                        body["error"]["reason"], reason,
                        "{roles:?} {call:?}: {body}"
                    );
                    assert_eq!(
                        www_authenticate.is_some(),
                        http == 401,
                        "WWW-Authenticate on 401 only"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_flawed_token_is_refused_with_its_reason() {
    let app = hs256_app().await;
    let now = app.clock_now();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let hs = |claims: &Value| sign(Header::new(Algorithm::HS256), claims, &key);
    let me = app.employee(ME);
    let mut expired = claims(&me, &["employee"], now);
    expired["exp"] = json!(now.timestamp() - 61);
    let mut within_leeway = claims(&me, &["employee"], now);
    within_leeway["exp"] = json!(now.timestamp() - 59);
    let mut not_yet = claims(&me, &["employee"], now);
    not_yet["nbf"] = json!(now.timestamp() + 61);
    let mut wrong_issuer = claims(&me, &["employee"], now);
    wrong_issuer["iss"] = json!("https://evil.test");
    let mut wrong_audience = claims(&me, &["employee"], now);
    wrong_audience["aud"] = json!("another-service");
    let mut no_exp = claims(&me, &["employee"], now);
    no_exp.as_object_mut().unwrap().remove("exp");
    let none = {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims(&me, &["fleet_admin"], now))
        )
    };
    let bad_signature = sign(
        Header::new(Algorithm::HS256),
        &claims(&me, &["fleet_admin"], now),
        &EncodingKey::from_secret(b"guessed"),
    );
    // A critical extension this service does not understand.
    let mut crit = Header::new(Algorithm::HS256);
    crit.crit = Some(vec!["urn:example:must-understand".into()]);
    let crit = sign(crit, &claims(&me, &["employee"], now), &key);
    let cases = [
        ("expired", hs(&expired), "TOKEN_EXPIRED"),
        ("unknown crit", crit, "TOKEN_INVALID"),
        ("not yet valid", hs(&not_yet), "TOKEN_INVALID"),
        ("bad signature", bad_signature, "TOKEN_INVALID"),
        ("wrong issuer", hs(&wrong_issuer), "TOKEN_INVALID"),
        ("wrong audience", hs(&wrong_audience), "TOKEN_INVALID"),
        ("no exp", hs(&no_exp), "TOKEN_INVALID"),
        ("alg none", none, "TOKEN_INVALID"),
        ("garbage", "not-a-token".into(), "TOKEN_INVALID"),
    ];
    let request = || ListVehiclesRequest::default();
    for (name, token, reason) in cases {
        let status = app
            .fleet
            .clone()
            .list_vehicles(Cred::Bearer(token.clone()).grpc(request()))
            .await
            .expect_err(name);
        assert_status(&status, Code::Unauthenticated, reason);
        assert!(
            !status.message().contains(&token),
            "{name}: the token is echoed"
        );
    }
    // Within the 60 s leeway an expired token still passes.
    app.fleet
        .clone()
        .list_vehicles(Cred::Bearer(hs(&within_leeway)).grpc(request()))
        .await
        .unwrap();
    // Another scheme than Bearer.
    let mut basic = tonic::Request::new(request());
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let status = app.fleet.clone().list_vehicles(basic).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "TOKEN_INVALID");

    // Over REST: 401 with WWW-Authenticate, the same reason.
    let response = app
        .http
        .get(app.url("/api/vehicles"))
        .bearer_auth(hs(&expired))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "TOKEN_EXPIRED");
}

#[tokio::test]
async fn the_token_clock_is_the_service_clock() {
    let app = hs256_app().await;
    let cred = Cred::Bearer(token(&app.employee(ME), &[Role::Employee], app.clock_now()));
    let call = || app.list_vehicles_as(&cred);
    call().await.unwrap();
    // An hour's token, plus the leeway, then no more.
    app.clock.advance(chrono::Duration::seconds(3600 + 60));
    call().await.unwrap();
    app.clock.advance(chrono::Duration::seconds(1));
    assert_status(
        &call().await.unwrap_err(),
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
}

/// An app verifying tokens against the JWKS file `path`.
async fn jwks_app(keys: KeySource) -> TestApp {
    spawn_app_with(AppOptions {
        auth: AuthSettings {
            jwt: Some(identity::jwt_config(keys)),
            ..AuthSettings::default()
        },
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn jwks_keys_verify_rs256_es256_and_eddsa_and_refuse_key_confusion() {
    let (rs, es, ed) = (
        JwkPair::rs256("rsa-1"),
        JwkPair::es256("ec-1"),
        JwkPair::eddsa("ed-1"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&rs, &es, &ed])).unwrap();
    let app = jwks_app(KeySource::JwksFile(path)).await;
    let now = app.clock_now();
    let me = app.employee(ME);
    let app = &app;
    let call = |token: String| async move { app.list_vehicles_as(&Cred::Bearer(token)).await };
    for pair in [&rs, &es, &ed] {
        call(pair.token(&claims(&me, &["employee"], now)))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", pair.alg));
    }
    // HS256 signed with a public key as the secret: key confusion.
    for pair in [&rs, &es, &ed] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(pair.kid.clone());
        let forged = sign(
            header,
            &claims(&me, &["fleet_admin"], now),
            &EncodingKey::from_secret(pair.public_pem.as_bytes()),
        );
        assert_status(
            &call(forged).await.unwrap_err(),
            Code::Unauthenticated,
            "TOKEN_INVALID",
        );
    }
    // A token whose header claims another key's algorithm.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(rs.kid.clone());
    let mismatched = sign(header, &claims(&me, &["employee"], now), &es.encoding);
    assert_status(
        &call(mismatched).await.unwrap_err(),
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    // A key the file does not hold (a file is not refetched).
    let stranger = JwkPair::es256("ec-2").token(&claims(&me, &["employee"], now));
    assert_status(
        &call(stranger).await.unwrap_err(),
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

/// A JWKS served over HTTP on port 0, counting its fetches.
struct JwksServer {
    url: String,
    document: Arc<std::sync::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: String) -> Self {
        let document = Arc::new(std::sync::Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (Arc::clone(&document), Arc::clone(&fetches));
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (doc, count) = (Arc::clone(&doc), Arc::clone(&count));
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    doc.lock().unwrap().clone()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            document,
            fetches,
        }
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_url_at_most_once_in_a_while() {
    let old = JwkPair::es256("2026-11");
    let server = JwksServer::start(jwks(&[&old])).await;
    let app = jwks_app(KeySource::JwksUrl(server.url.clone())).await;
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "fetched at startup"
    );
    let now = app.clock_now();
    let me = app.employee(ME);
    let app = &app;
    let call = |token: String| async move { app.list_vehicles_as(&Cred::Bearer(token)).await };
    call(old.token(&claims(&me, &["employee"], now)))
        .await
        .unwrap();
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "known keys fetch nothing"
    );

    // The provider rotates in a new key: the first token signed with it
    // makes the service fetch the set again, and it passes.
    let new = JwkPair::eddsa("2026-12");
    *server.document.lock().unwrap() = jwks(&[&old, &new]);
    call(new.token(&claims(&me, &["employee"], now)))
        .await
        .unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // Tokens naming keys nobody has do not hammer the provider.
    for i in 0..5 {
        let stranger = JwkPair::es256(&format!("unknown-{i}"));
        let status = call(stranger.token(&claims(&me, &["employee"], now)))
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, "TOKEN_INVALID");
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        2,
        "refetches are rate-limited"
    );
}

/// An app whose API key file holds `entries`, and the directory holding it.
async fn app_with_api_keys(entries: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, entries).unwrap();
    let app = spawn_app_with(AppOptions {
        auth: AuthSettings {
            api_keys_file: Some(path),
            ..AuthSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    (app, dir)
}

#[tokio::test]
async fn api_keys_authenticate_services_with_their_roles() {
    let (app, _dir) = app_with_api_keys(&format!(
        "{}{}",
        key_entry("gate-system", "gate-key-1", &["booking_agent"]),
        key_entry("audit-export", "audit-key-1", &["auditor"])
    ))
    .await;
    let gate = Cred::ApiKey("gate-key-1".into());
    let booked = app
        .allocations
        .clone()
        .create_allocation(gate.grpc(CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: app.employee(OTHER),
                vehicle_id: app.vehicle(0),
                allocation_date: app.day(1),
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let audit = Cred::ApiKey("audit-key-1".into());
    let status = app
        .allocations
        .clone()
        .delete_allocation(audit.grpc(DeleteAllocationRequest {
            id: booked.id.clone(),
            etag: String::new(),
        }))
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::PermissionDenied, "ROLE_REQUIRED");
    assert_eq!(
        details.error_info().unwrap().metadata["roles"],
        "employee,booking_agent,fleet_admin"
    );
    for bad in ["gate-key-2", "", "GATE-KEY-1"] {
        let status = app
            .fleet
            .clone()
            .list_vehicles(Cred::ApiKey(bad.into()).grpc(ListVehiclesRequest::default()))
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, "API_KEY_INVALID");
    }
    // Over REST the key passes through the gateway.
    let response = app
        .http
        .delete(app.url(&format!("/api/allocations/{}", booked.id)))
        .header("x-api-key", "gate-key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // Bearer tokens are not configured here.
    let token = token(&app.employee(ME), &[Role::FleetAdmin], app.clock_now());
    let status = app
        .fleet
        .clone()
        .list_vehicles(Cred::Bearer(token).grpc(ListVehiclesRequest::default()))
        .await
        .unwrap_err();
    assert_status(&status, Code::Unauthenticated, "TOKEN_INVALID");
}

#[tokio::test]
async fn health_and_reflection_stay_open_and_reflection_can_be_turned_off() {
    let app = hs256_app().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, 1, "SERVING, without credentials");
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/", "/redoc"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let services = crate::reflection::list_services(&app).await;
    assert!(
        services.contains(&"vehicle_allocation.v1.AllocationService".to_owned()),
        "{services:?}"
    );

    let closed = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        reflection: false,
        ..AppOptions::default()
    })
    .await;
    let status = crate::reflection::try_list_services(&closed)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn the_rate_limit_answers_resource_exhausted_and_429_with_retry_after() {
    let app = spawn_app_with(AppOptions {
        auth: AuthSettings {
            rate_limit: Some(RateLimit {
                per_second: std::num::NonZeroU32::new(1).unwrap(),
                burst: std::num::NonZeroU32::new(2).unwrap(),
            }),
            ..hs256_auth()
        },
        ..AppOptions::default()
    })
    .await;
    let cred = Cred::Bearer(token(&app.employee(ME), &[Role::Employee], app.clock_now()));
    let call = || app.list_vehicles_as(&cred);
    call().await.unwrap();
    call().await.unwrap();
    let status = call().await.unwrap_err();
    let details = assert_status(&status, Code::ResourceExhausted, "RATE_LIMITED");
    let delay = details.retry_info().unwrap().retry_delay.unwrap();
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );

    let response = cred
        .rest(app.http.get(app.url("/api/vehicles")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "RATE_LIMITED");

    // Another caller has a bucket of its own.
    let other = Cred::Bearer(token(
        &app.employee(OTHER),
        &[Role::Employee],
        app.clock_now(),
    ));
    app.fleet
        .clone()
        .list_vehicles(other.grpc(ListVehiclesRequest::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_peer_that_keeps_failing_authentication_waits_unchecked_and_others_do_not() {
    let app = spawn_app_with(AppOptions {
        auth: hs256_auth(),
        limits: vehicle_allocation::server::ServerLimits {
            auth_failures: vehicle_allocation::auth::failures::FailureLimit {
                per_second: std::num::NonZeroU32::new(1).unwrap(),
            },
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    let good = Cred::Bearer(token(&app.employee(ME), &[Role::Employee], app.clock_now()));
    let bad = Cred::Bearer("not-a-token".into());
    // Missing credentials are no guess: they do not count.
    for _ in 0..5 {
        let status = app
            .fleet
            .clone()
            .list_vehicles(ListVehiclesRequest::default())
            .await
            .unwrap_err();
        assert_status(&status, Code::Unauthenticated, "CREDENTIALS_MISSING");
    }
    // A burst of ten wrong tokens empties the bucket...
    for _ in 0..10 {
        let status = app.list_vehicles_as(&bad).await.unwrap_err();
        assert_status(&status, Code::Unauthenticated, "TOKEN_INVALID");
    }
    let known = Cred::Bearer(token(
        &app.employee(OTHER),
        &[Role::Employee],
        app.clock_now(),
    ));
    app.list_vehicles_as(&known)
        .await
        .expect("not blocked yet: the missing ones did not count");
    // ...and one more is a failure too many.
    let status = app.list_vehicles_as(&bad).await.unwrap_err();
    assert_status(&status, Code::Unauthenticated, "TOKEN_INVALID");
    // Now a token that would need a signature check waits, unchecked...
    let status = app.list_vehicles_as(&good).await.unwrap_err();
    let details = assert_status(&status, Code::ResourceExhausted, "RATE_LIMITED");
    let delay = details.retry_info().unwrap().retry_delay.unwrap();
    assert!(delay <= Duration::from_secs(1), "{delay:?}");
    let response = good
        .rest(app.http.get(app.url("/api/vehicles")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "the same peer over REST");
    // ...while one verified lately still works: a caller sharing the
    // guesser's address is not locked out.
    app.list_vehicles_as(&known)
        .await
        .expect("a token verified lately needs no signature check");
    // Another peer is not held back by it.
    let other = app.channel_from([127, 0, 0, 2].into()).await;
    v1::fleet_service_client::FleetServiceClient::new(other)
        .list_vehicles(good.grpc(ListVehiclesRequest::default()))
        .await
        .expect("another peer is checked as usual");
    app.clock.advance(chrono::Duration::seconds(1));
    app.list_vehicles_as(&good)
        .await
        .expect("checked again once a failure is allowed again");
}

#[tokio::test]
async fn without_authentication_a_non_loopback_listener_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |allow: bool| {
        let mut settings = crate::helpers::plain_settings(dir.path());
        settings.grpc_addr = "0.0.0.0:0".parse().unwrap();
        settings.auth.allow_unauthenticated = allow;
        settings
    };
    let refused = Application::build(settings(false))
        .await
        .err()
        .expect("refused");
    assert!(matches!(refused, AppError::Unprotected { .. }), "{refused}");
    let message = refused.to_string();
    for variable in [
        "AUTH_JWT_",
        "AUTH_API_KEYS_FILE",
        "ALLOW_UNAUTHENTICATED=true",
    ] {
        assert!(message.contains(variable), "{message}");
    }
    Application::build(settings(true))
        .await
        .expect("explicitly allowed");
    // With authentication configured, any address will do.
    let mut with_auth = settings(false);
    with_auth.auth = hs256_auth();
    Application::build(with_auth).await.expect("authenticated");
}

#[tokio::test]
async fn log_lines_carry_the_principal_and_never_the_credential() {
    let app = hs256_app().await;
    let employee = "emp-log-probe-7731";
    let token = token(employee, &[Role::Employee, Role::Auditor], app.clock_now());
    app.fleet
        .clone()
        .list_vehicles(Cred::Bearer(token.clone()).grpc(ListVehiclesRequest::default()))
        .await
        .unwrap();
    let lines = logged_lines();
    let line = lines
        .iter()
        .find(|l| l.contains(employee) && l.contains("grpc request"))
        .expect("a request line naming the principal");
    assert!(line.contains("roles=employee,auditor"), "{line}");
    assert!(
        lines.iter().all(|l| !l.contains(&token)),
        "a token was logged"
    );

    // A line logged on the way, here the refusal of a bad token, carries
    // the request's id, as the request's own line does.
    let mut refused = Cred::Bearer("not-a-token".into()).grpc(ListVehiclesRequest::default());
    refused
        .metadata_mut()
        .insert("x-request-id", "log-probe-refused-4417".parse().unwrap());
    app.fleet.clone().list_vehicles(refused).await.unwrap_err();
    let tagged = logged_lines_with("request_id=log-probe-refused-4417");
    assert!(
        tagged.iter().any(|l| l.contains("refused credentials")),
        "{tagged:#?}"
    );
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("grpc request") && l.contains("code=Unauthenticated")),
        "{tagged:#?}"
    );

    // An API key's caller is logged by the key's name, never the key.
    let key = "log-probe-key-5519";
    let (app, _dir) = app_with_api_keys(&key_entry("log-probe-service", key, &["auditor"])).await;
    app.list_vehicles_as(&Cred::ApiKey(key.into()))
        .await
        .unwrap();
    let lines = logged_lines();
    let line = lines
        .iter()
        .find(|l| l.contains("principal=log-probe-service") && l.contains("grpc request"))
        .expect("a request line naming the key");
    assert!(line.contains("roles=auditor"), "{line}");
    assert!(lines.iter().all(|l| !l.contains(key)), "a key was logged");
}
