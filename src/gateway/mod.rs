//! The REST gateway: the seed's REST paths onto the gRPC calls.
//!
//! Every request is transcoded into a gRPC request and sent through the
//! upstream (in-process by default, see [`Upstream`]), so REST callers get
//! exactly the gRPC service's validation, rules and errors; the gateway
//! holds no rules of its own. No call has code here: each call's REST form
//! is declared in the proto (`google.api.http`) and read in [`bindings`]
//! with the hooks the REST contract adds per method, served by
//! [`transcode`], and documented by [`openapi`]. The gateway adds the HTTP
//! things: status codes (mapped in [`error`]), CORS, a body limit, a time
//! limit, request ids, and Swagger UI and ReDoc.

pub mod bindings;
mod docs;
pub mod error;
mod extract;
mod middleware;
mod openapi;
mod probes;
pub mod transcode;
mod upstream;
mod wire;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Redirect;
use axum::routing::get;
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

/// The routes that are not calls (the probes), with their OpenAPI
/// descriptions.
fn probe_routes() -> OpenApiRouter<Upstream> {
    OpenApiRouter::with_openapi(docs::base())
        .routes(routes!(probes::healthz))
        .routes(routes!(probes::readyz))
}

/// The OpenAPI document, as served at [`OPENAPI_PATH`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented(probe_routes().into_openapi())
}

/// The probes' document with every call's operation and schemas, written
/// from the bindings ([`openapi::paths_and_schemas`]), finished.
fn documented(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let (paths, schemas) = openapi::paths_and_schemas();
    let calls: utoipa::openapi::OpenApi = serde_json::from_value(serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "", "version": ""},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
    .expect("the written operations are OpenAPI");
    document.merge(calls);
    docs::finish(document)
}

/// The whole HTTP application onto `upstream`, with `/metrics` when
/// `metrics` is given.
pub fn router(
    upstream: Upstream,
    config: &GatewayConfig,
    today: Today,
    metrics: Option<PrometheusHandle>,
) -> Router {
    let (probes, openapi) = probe_routes().split_for_parts();
    let mut router = Router::new()
        // Where a newcomer's browser lands: the API's documentation.
        .route("/", get(|| async { Redirect::temporary("/docs/") }))
        .merge(transcode::routes(upstream.clone()))
        .merge(probes.with_state(upstream))
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
