//! The REST gateway: the seed's REST paths onto the gRPC calls.
//!
//! Every request is translated into a gRPC request and sent through the
//! generated clients (in-process by default, see [`Upstream`]), so REST
//! callers get exactly the gRPC service's validation, rules and errors; the
//! gateway holds no rules of its own. It adds the HTTP things: status codes
//! (mapped in [`error`]), `ETag`/`If-Match`, `Location`, `Idempotency-Key`,
//! CORS, a body limit, a time limit, request ids, and the OpenAPI document
//! with Swagger UI and ReDoc. Each call's REST form is declared in the
//! proto (`google.api.http`) and read from it in [`bindings`], with the
//! hooks the REST contract adds per method; the handlers are still written
//! by hand (issue 34 moves them onto the bindings).

mod admin;
mod admin_json;
mod allocations;
pub mod bindings;
mod docs;
pub mod error;
mod events;
mod extract;
mod fleet;
mod json;
mod middleware;
mod probes;
pub mod transcode;
mod upstream;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Redirect;
use axum::routing::{delete, get, post, put};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::util::option_layer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use docs::{OPENAPI_PATH, REDOC_EMBEDDED, Today, operation_reasons};
pub use upstream::{Upstream, UpstreamSetupError, UpstreamTls};

use crate::grpc::REQUEST_ID_HEADER;

/// Which browser origins may call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No cross-origin calls (no CORS headers at all).
    #[default]
    None,
    /// Any origin (`*`); only when configured explicitly.
    Any,
    /// These origins, e.g. `https://fleet.example.com`.
    List(Vec<HeaderValue>),
}

/// How the gateway serves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A request taking longer is answered 504.
    pub request_timeout: Duration,
    pub cors: CorsOrigins,
}

/// The API's routes, each declared with its OpenAPI description. The
/// document is still made from them; the calls [`transcode`] serves are
/// not routed to their handlers (see [`handwritten_routes`]).
fn api_routes() -> OpenApiRouter<Upstream> {
    OpenApiRouter::with_openapi(docs::base())
        .routes(routes!(allocations::create_allocation))
        .routes(routes!(allocations::list_allocation_history))
        .routes(routes!(
            allocations::get_allocation,
            allocations::update_allocation,
            allocations::delete_allocation
        ))
        .routes(routes!(fleet::list_employees, admin::create_employee))
        .routes(routes!(fleet::get_employee, admin::update_employee))
        .route("/api/employees/{id}", post(admin::employee_action))
        .routes(routes!(admin::list_drivers, admin::create_driver))
        .routes(routes!(admin::get_driver, admin::update_driver))
        .route("/api/drivers/{id}", post(admin::driver_action))
        .routes(routes!(fleet::list_vehicles, admin::create_vehicle))
        .routes(routes!(fleet::list_available_vehicles))
        .routes(routes!(fleet::get_vehicle, admin::update_vehicle))
        .route("/api/vehicles/{id}", post(admin::vehicle_action))
        .routes(routes!(admin::assign_driver))
        .routes(routes!(
            admin::list_vehicle_blocks,
            admin::create_vehicle_block
        ))
        .routes(routes!(admin::delete_vehicle_block))
        .routes(routes!(events::list_events))
        .routes(routes!(events::stream_events))
        .routes(routes!(probes::healthz))
        .routes(routes!(probes::readyz))
}

/// The routes of the calls that [`transcode`] does not serve yet.
fn handwritten_routes() -> Router<Upstream> {
    Router::new()
        .route("/api/employees/{id}", post(admin::employee_action))
        .route("/api/drivers/{id}", post(admin::driver_action))
        .route("/api/vehicles/{id}", post(admin::vehicle_action))
        .route("/api/vehicles/{id}/driver", put(admin::assign_driver))
        .route(
            "/api/vehicles/{id}/blocks",
            post(admin::create_vehicle_block),
        )
        .route(
            "/api/vehicles/{id}/blocks/{block_id}",
            delete(admin::delete_vehicle_block),
        )
        .route("/api/events/stream", get(events::stream_events))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
}

/// The OpenAPI document, as served at [`OPENAPI_PATH`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented(api_routes().into_openapi())
}

/// The routes' document with the custom methods the router reaches through
/// dispatchers, finished.
fn documented(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    openapi.merge(admin::CustomMethods::openapi());
    docs::finish(openapi)
}

/// The whole HTTP application onto `upstream`, with `/metrics` when
/// `metrics` is given.
pub fn router(
    upstream: Upstream,
    config: &GatewayConfig,
    today: Today,
    metrics: Option<PrometheusHandle>,
) -> Router {
    let (_, openapi) = api_routes().split_for_parts();
    let mut router = Router::new()
        // Where a newcomer's browser lands: the API's documentation.
        .route("/", get(|| async { Redirect::temporary("/docs/") }))
        .merge(transcode::routes(upstream.clone()))
        .merge(handwritten_routes().with_state(upstream))
        .merge(docs::routes(documented(openapi), today));
    if let Some(handle) = metrics {
        router = router.merge(metrics_router(handle));
    }
    router
        .fallback(error::no_such_path)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(crate::server::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            config.request_timeout,
            middleware::time_limit,
        ))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn(middleware::json_newline))
        .layer(option_layer(cors(&config.cors)))
        .layer(axum::middleware::from_fn(middleware::request_id))
}

/// `GET /metrics`: every metric in Prometheus's text format.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    let scrape = move || {
        let text = crate::metrics::render(&handle);
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                )],
                text,
            )
        }
    };
    Router::new().route(METRICS_PATH, get(scrape))
}

/// Where Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::AUTHORIZATION,
                HeaderName::from_static(crate::auth::API_KEY_HEADER),
                HeaderName::from_static("idempotency-key"),
                request_id.clone(),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
                request_id,
            ])
            .max_age(Duration::from_secs(600)),
    )
}
