//! The OpenAPI document, Swagger UI at `/docs` and ReDoc at `/redoc`.
//!
//! Every operation's error responses are written from the catalogue of
//! reasons ([`crate::reasons`]): each status lists the reasons it can carry,
//! with an example body per reason. Example dates are filled in when the
//! document is served, so "Try it out" always books a day that can be
//! booked.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use chrono::NaiveDate;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa_swagger_ui::SwaggerUi;

use super::error::{ErrorBody, ErrorResponse, FieldViolationBody, code_name};
use crate::grpc::REQUEST_ID_HEADER;
use crate::reasons::{self, Reason};

/// The security schemes' names in the document.
const BEARER_AUTH: &str = "bearerAuth";
const API_KEY: &str = "apiKey";

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Example dates are written as days of [`EXAMPLE_YEAR`], its 1 January
/// standing for today: when the document is served each becomes as many
/// days after the service's today (in ORG_TIMEZONE), so `2099-01-08` is a
/// week ahead and `2099-01-31` a month.
pub const EXAMPLE_YEAR: i32 = 2099;

/// A bookable date in examples: a week ahead.
pub const EXAMPLE_DATE: &str = "2099-01-08";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vehicle-allocation",
        description = "Book a company vehicle, with its driver, for one calendar day.\n\n\
            This REST API is a gateway onto the gRPC services `vehicle_allocation.v1.AllocationService`, \
            `vehicle_allocation.v1.FleetService` and `vehicle_allocation.v1.EventService`: the same rules, the same errors.\n\n\
            Every error has the shape `{\"error\": {\"code\", \"status\", \"message\", \"reason\", \
            \"field_violations\", \"metadata\"}}`; `reason` is meant for code, e.g. `VEHICLE_ALREADY_BOOKED`. \
            Each operation lists the reasons it can answer with, under the status they come with.",
    ),
    tags(
        (name = "allocations", description = "Bookings: make, read, change, cancel, and the history report."),
        (name = "fleet", description = "Employees, drivers, vehicles with their drivers, and availability."),
        (name = "fleet administration", description = "For `fleet_admin` callers: add and change employees, drivers and vehicles, assign drivers, take vehicles out of service. Changes that bookings from today on stand in the way of fail with HAS_FUTURE_BOOKINGS unless `cancel_conflicting_bookings=true`."),
        (name = "events", description = "The audit trail: every change, who made it and in which request, with the resource before and after; as a list and as a live, resumable Server-Sent Events stream."),
        (name = "probes", description = "Liveness and readiness for load balancers."),
    ),
    components(schemas(ErrorResponse, ErrorBody, FieldViolationBody)),
)]
struct ApiDoc;

/// The document's fixed parts, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The reasons an operation can answer with: its call's
/// ([`reasons::CALLS`], which the gRPC edge holds the call to), those of
/// every call, and the gateway's own for the shape of its request as the
/// proto binds it ([`super::bindings`]).
pub fn operation_reasons(operation_id: &str) -> Vec<Reason> {
    use reasons::*;
    // Only gRPC callers can meet these: the gateway builds the message
    // (and an update's mask) itself.
    let grpc_only = [MALFORMED_REQUEST, MESSAGE_TOO_LARGE, UNKNOWN_FIELD_PATH];
    let body = [
        MALFORMED_JSON,
        MISSING_BODY,
        UNKNOWN_FIELD,
        INVALID_FIELD,
        UNREADABLE_BODY,
        UNSUPPORTED_MEDIA_TYPE,
        BODY_TOO_LARGE,
    ];
    let query = [UNKNOWN_FIELD, INVALID_FIELD];
    // The connection layer's limits, and the gateway's upstream.
    let gateway = [
        URI_TOO_LONG,
        HEADERS_TOO_LARGE,
        BODY_TOO_LARGE,
        UPSTREAM_UNAVAILABLE,
    ];
    let mut list: Vec<Reason> = Vec::new();
    if let Some(binding) = super::bindings::by_operation(operation_id) {
        list.extend(reasons::of_call(&binding.call).unwrap_or_default());
        if binding.has_path_variables() {
            list.push(INVALID_FIELD);
        }
        if binding.is_custom_method() {
            // Reached through a dispatcher, which refuses other verbs.
            list.push(NO_SUCH_PATH);
        }
        if binding.body.is_some() {
            list.extend(body);
        }
        if !binding.query.is_empty() {
            list.extend(query);
        }
    }
    list.extend(EVERY_CALL);
    list.extend(gateway);
    let mut seen = Vec::new();
    list.retain(|r| {
        let new = !seen.contains(&r.name) && !grpc_only.contains(r);
        seen.push(r.name);
        new
    });
    list
}

/// A realistic error body for `reason`.
pub fn example_body(reason: &Reason) -> Value {
    use reasons::*;
    let booking = "01937a4e-8d2b-7c1a-9f3e-2b6d8c4a1e07";
    let (message, fields, metadata): (String, Vec<(&str, String)>, Value) = match *reason {
        r if r == FIELD_REQUIRED => (
            "vehicle_id is required".into(),
            vec![("vehicle_id", "vehicle_id is required".into())],
            json!({"fields": "vehicle_id"}),
        ),
        r if r == INVALID_DATE => (
            "allocation_date \"2026-02-30\" is not a date in YYYY-MM-DD form".into(),
            vec![(
                "allocation_date",
                "allocation_date \"2026-02-30\" is not a date in YYYY-MM-DD form".into(),
            )],
            json!({"fields": "allocation_date"}),
        ),
        r if r == VEHICLE_ALREADY_BOOKED => (
            format!(
                "vehicle \"veh-0007\" is already booked on {EXAMPLE_DATE} by allocation \"{booking}\""
            ),
            vec![],
            json!({"allocation_id": booking, "vehicle_id": "veh-0007", "allocation_date": EXAMPLE_DATE}),
        ),
        r if r == EMPLOYEE_ALREADY_BOOKED => (
            format!(
                "employee \"emp-00042\" already holds allocation \"{booking}\" on {EXAMPLE_DATE}; an employee can hold one booking per date"
            ),
            vec![],
            json!({"allocation_id": booking, "employee_id": "emp-00042", "allocation_date": EXAMPLE_DATE}),
        ),
        r if r == ETAG_MISMATCH => (
            format!(
                "allocation \"{booking}\" has changed since it was read: etag \"1\" is stale, the current etag is \"2\"; read it again and retry"
            ),
            vec![],
            json!({"allocation_id": booking, "etag": "1", "current_etag": "2"}),
        ),
        r if r == ROLE_REQUIRED => (
            "permission denied: this call needs one of the roles employee,booking_agent,fleet_admin"
                .into(),
            vec![],
            json!({"roles": "employee,booking_agent,fleet_admin"}),
        ),
        r if r == ALLOCATION_NOT_FOUND => (
            format!("allocation \"{booking}\" does not exist"),
            vec![],
            json!({"resource": "allocation", "id": booking}),
        ),
        r if r == RATE_LIMITED => (
            "too many requests from this caller; retry after the delay in RetryInfo".into(),
            vec![],
            json!({"retry_after_seconds": "1"}),
        ),
        r if r.code == tonic::Code::InvalidArgument && r != BAD_REQUEST => {
            let field = match r.name {
                "INVALID_PAGE_SIZE" => "page_size",
                "INVALID_PAGE_TOKEN" | "PAGE_TOKEN_MISMATCH" => "page_token",
                "INVALID_ETAG" => "If-Match",
                "REQUEST_ID_REUSED" => "Idempotency-Key",
                "INVALID_DATE_RANGE" => "start_date",
                "FIELD_TOO_LONG" => "purpose",
                "UNKNOWN_FIELD" => "colour",
                "NOTHING_TO_UPDATE" | "MALFORMED_JSON" | "MISSING_BODY" | "UNREADABLE_BODY"
=> "body",
                _ => "allocation_date",
            };
            (
                format!("{field}: {}", r.doc),
                vec![(field, r.doc.to_owned())],
                json!({"fields": field}),
            )
        }
        r => (r.doc.to_owned(), vec![], json!({})),
    };
    json!({"error": {
        "code": reason.http().as_u16(),
        "status": code_name(reason.code),
        "message": message,
        "reason": reason.name,
        "field_violations": fields.into_iter()
            .map(|(field, description)| json!({"field": field, "description": description}))
            .collect::<Vec<_>>(),
        "metadata": metadata,
    }})
}

/// Adds what every operation shares: the optional `x-request-id` request
/// header, the `x-request-id` header on every response, the security
/// schemes, and under `/api/` the error responses of
/// [`operation_reasons`].
pub fn finish(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let string = || ObjectBuilder::new().schema_type(Type::String).build();
    let parameter = ParameterBuilder::new()
        .name(REQUEST_ID_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Ties the request to its log lines here and on the gRPC side; made up when absent.",
        ))
        .schema(Some(string()))
        .build();
    let header = HeaderBuilder::new()
        .schema(Some(string()))
        .description(Some("The request's id, as sent or as made up."))
        .build();
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER_AUTH,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT from the organisation's identity provider (or `vehicle-allocation token` in development).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            crate::auth::API_KEY_HEADER,
            "An internal service's API key.",
        ))),
    );
    // Either scheme will do.
    let security = vec![
        SecurityRequirement::new(BEARER_AUTH, Vec::<String>::new()),
        SecurityRequirement::new(API_KEY, Vec::<String>::new()),
    ];
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.patch,
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if path.starts_with("/api/") {
                operation.security = Some(security.clone());
                let id = operation.operation_id.clone().unwrap_or_default();
                for (status, response) in error_responses(&operation_reasons(&id)) {
                    operation
                        .responses
                        .responses
                        .insert(status, RefOr::T(response));
                }
            }
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(RefOr::T(parameter.clone()));
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(REQUEST_ID_HEADER.to_owned(), RefOr::T(header.clone()));
                }
            }
        }
    }
    openapi
}

/// One response per HTTP status: its reasons described, one example each.
fn error_responses(list: &[Reason]) -> BTreeMap<String, utoipa::openapi::Response> {
    let mut by_status: BTreeMap<u16, Vec<&Reason>> = BTreeMap::new();
    for reason in list {
        by_status
            .entry(reason.http().as_u16())
            .or_default()
            .push(reason);
    }
    by_status
        .into_iter()
        .map(|(status, reasons)| {
            let description = reasons
                .iter()
                .map(|r| format!("- `{}`: {}", r.name, r.doc))
                .collect::<Vec<_>>()
                .join("\n");
            let examples = reasons.iter().map(|r| {
                (
                    r.name,
                    ExampleBuilder::new()
                        .summary(r.name)
                        .value(Some(example_body(r)))
                        .build(),
                )
            });
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .examples_from_iter(examples)
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if status == 401 {
                response = response.header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                        .description(Some("`Bearer`"))
                        .build(),
                );
            }
            if status == 429 {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new().schema_type(Type::Integer).build(),
                        ))
                        .description(Some("Seconds to wait before retrying."))
                        .build(),
                );
            }
            (status.to_string(), response.build())
        })
        .collect()
}

/// Today, as the service reckons it; example dates are counted from it.
pub type Today = Arc<dyn Fn() -> NaiveDate + Send + Sync>;

/// The document as served: each example date of [`EXAMPLE_YEAR`] moved to
/// as many days after `today` (timestamps keep their time of day).
fn served(document: &str, today: NaiveDate) -> String {
    let year = format!("{EXAMPLE_YEAR}-");
    let base = NaiveDate::from_ymd_opt(EXAMPLE_YEAR, 1, 1).expect("1 January exists");
    let mut out = String::with_capacity(document.len());
    let mut rest = document;
    while let Some(at) = rest.find(&year) {
        out.push_str(&rest[..at]);
        let candidate = rest.get(at..at + 10).unwrap_or_default();
        match NaiveDate::parse_from_str(candidate, "%Y-%m-%d") {
            Ok(date) => {
                let day = today.checked_add_signed(date - base).unwrap_or(today);
                out.push_str(&day.to_string());
                rest = &rest[at + 10..];
            }
            Err(_) => {
                out.push_str(&year);
                rest = &rest[at + year.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether this build carries ReDoc's bundle (see build.rs).
pub const REDOC_EMBEDDED: bool = !REDOC_BUNDLE.is_empty();

/// `/openapi.json`, `/docs` (Swagger UI) and `/redoc` (ReDoc), each served
/// from the binary.
pub fn routes(openapi: utoipa::openapi::OpenApi, today: Today) -> Router {
    let document = openapi.to_json().expect("the OpenAPI document serializes");
    Router::new()
        .route(
            OPENAPI_PATH,
            get(move || {
                let body = served(&document, today());
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        body,
                    )
                }
            }),
        )
        .merge(
            SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::from(OPENAPI_PATH).persist_authorization(true)),
        )
        .route("/redoc", get(redoc_page))
        .route("/redoc/redoc.standalone.js", get(redoc_script))
        .route("/redoc/redoc.standalone.js.LICENSE.txt", get(redoc_licence))
}

/// ReDoc's page: the bundle served from the binary when the build embedded
/// it, else from ReDoc's CDN, with a visible way out when that fails.
async fn redoc_page() -> Html<String> {
    let script = if REDOC_BUNDLE.is_empty() {
        "https://cdn.redoc.ly/redoc/v2.5.1/bundles/redoc.standalone.js"
    } else {
        "/redoc/redoc.standalone.js"
    };
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>vehicle-allocation API (ReDoc)</title>
  <style>body {{ margin: 0; }} #fallback {{ display: none; font: 16px sans-serif; padding: 2em; }}</style>
</head>
<body>
  <div id="fallback">
    <h1>ReDoc could not be loaded</h1>
    <p>Its script did not load (this build does not carry it, and the browser cannot reach ReDoc's CDN).
       The same API is documented at <a href="/docs">/docs</a> (Swagger UI, served by this service),
       and the document itself is at <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</p>
  </div>
  <div id="redoc"></div>
  <script>
    function showFallback() {{ document.getElementById('fallback').style.display = 'block'; }}
  </script>
  <script src="{script}" onerror="showFallback()"></script>
  <script>
    if (window.Redoc) {{ Redoc.init('{OPENAPI_PATH}', {{}}, document.getElementById('redoc')); }}
    else {{ showFallback(); }}
  </script>
</body>
</html>
"#
    ))
}

/// ReDoc's standalone bundle, embedded at build time when it could be
/// fetched from the npm registry (see build.rs); empty otherwise.
const REDOC_BUNDLE: &str = include_str!(concat!(env!("OUT_DIR"), "/redoc.standalone.js"));
const REDOC_LICENCE: &str =
    include_str!(concat!(env!("OUT_DIR"), "/redoc.standalone.js.LICENSE.txt"));

async fn redoc_licence() -> impl IntoResponse {
    if REDOC_LICENCE.is_empty() {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        REDOC_LICENCE,
    )
        .into_response()
}

async fn redoc_script() -> impl IntoResponse {
    if REDOC_BUNDLE.is_empty() {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        REDOC_BUNDLE,
    )
        .into_response()
}
