//! The OpenAPI document, Swagger UI at `/docs` and ReDoc at `/redoc`.

use axum::Router;
use utoipa::OpenApi;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type,
};
use utoipa_redoc::{Redoc, Servable};
use utoipa_swagger_ui::SwaggerUi;

use super::error::{ErrorBody, ErrorResponse, FieldViolationBody};
use crate::grpc::REQUEST_ID_HEADER;

/// The security schemes' names in the document.
const BEARER_AUTH: &str = "bearerAuth";
const API_KEY: &str = "apiKey";

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vehicle-allocation",
        description = "Book a company vehicle, with its driver, for one calendar day.\n\n\
            This REST API is a gateway onto the gRPC services `vehicle_allocation.v1.AllocationService` \
            and `vehicle_allocation.v1.FleetService`: the same rules, the same errors.\n\n\
            Every error has the shape `{\"error\": {\"code\", \"status\", \"message\", \"reason\", \
            \"field_violations\", \"metadata\"}}`; `reason` is meant for code, e.g. `VEHICLE_ALREADY_BOOKED`.",
    ),
    tags(
        (name = "allocations", description = "Bookings: make, read, change, cancel, and the history report."),
        (name = "fleet", description = "Employees, and vehicles with their drivers."),
        (name = "probes", description = "Liveness and readiness for load balancers."),
    ),
    components(schemas(ErrorResponse, ErrorBody, FieldViolationBody)),
)]
struct ApiDoc;

/// The document's fixed parts, before the routes add their paths.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The errors any API operation can answer, whatever it does.
const SHARED_ERRORS: [(&str, &str); 6] = [
    (
        "401",
        "No credentials, or bad ones (CREDENTIALS_MISSING, TOKEN_EXPIRED, TOKEN_INVALID, API_KEY_INVALID); \
         the response carries `WWW-Authenticate: Bearer`.",
    ),
    (
        "403",
        "The caller may not do this: NOT_OWNER (an employee acting on someone else's booking), \
         or ROLE_REQUIRED with the roles that would do in `metadata.roles`.",
    ),
    (
        "429",
        "Too many requests from this caller (RATE_LIMITED); `Retry-After` says when to come back.",
    ),
    ("500", "Internal error."),
    ("503", "The service cannot reach its store."),
    ("504", "The request took too long."),
];

/// Adds what every operation shares: the optional `x-request-id` request
/// header, the `x-request-id` header on every response, and, under `/api/`,
/// the [`SHARED_ERRORS`].
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
    let error_body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorResponse")))
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
            &mut item.post,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            if path.starts_with("/api/") {
                operation.security = Some(security.clone());
                for (code, description) in SHARED_ERRORS {
                    let response = ResponseBuilder::new()
                        .description(description)
                        .content("application/json", error_body.clone())
                        .build();
                    operation
                        .responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert(RefOr::T(response));
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

/// `/openapi.json`, `/docs` (Swagger UI, served from the binary) and
/// `/redoc` (ReDoc, whose script comes from its CDN).
pub fn routes(openapi: utoipa::openapi::OpenApi) -> Router {
    Router::new()
        .merge(SwaggerUi::new("/docs").url(OPENAPI_PATH, openapi.clone()))
        .merge(Redoc::with_url("/redoc", openapi))
}
