//! The gateway's one error shape, and the one place where gRPC statuses
//! become HTTP statuses.
//!
//! Every error a REST caller sees, whether it came from the gRPC service or
//! from the gateway itself (a malformed body, an unknown path), is
//!
//! ```json
//! {"error": {"code": 404, "status": "NOT_FOUND", "message": "...",
//!            "reason": "ALLOCATION_NOT_FOUND", "field_violations": [...],
//!            "metadata": {...}}}
//! ```

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;
use utoipa::ToSchema;

use crate::domain::error::Echo;
use crate::grpc::status::ERROR_DOMAIN;
use crate::reasons::{self, Reason};

pub use crate::reasons::http_status;

/// The canonical name of a gRPC code, as in `google.rpc.Code`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {
    "code": 409,
    "status": "ALREADY_EXISTS",
    "message": "vehicle \"veh-0007\" is already booked on 2099-01-08 by allocation \"01a21a50-a9c3-7207-becc-cc45f2634d1f\"",
    "reason": "VEHICLE_ALREADY_BOOKED",
    "field_violations": [],
    "metadata": {"allocation_id": "01a21a50-a9c3-7207-becc-cc45f2634d1f", "vehicle_id": "veh-0007", "allocation_date": "2099-01-08"}
}}))]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code, repeated.
    #[schema(example = 400)]
    pub code: u16,
    /// The gRPC status name, e.g. `NOT_FOUND`.
    #[schema(example = "INVALID_ARGUMENT")]
    pub status: String,
    /// A sentence for humans.
    pub message: String,
    /// A machine-readable reason, e.g. `VEHICLE_ALREADY_BOOKED`.
    #[schema(example = "DATE_IN_PAST")]
    pub reason: String,
    /// The request fields at fault, for bad input; otherwise empty.
    pub field_violations: Vec<FieldViolationBody>,
    /// Facts about the error, e.g. the `allocation_id` in the way.
    pub metadata: BTreeMap<String, String>,
}

/// One request field at fault.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldViolationBody {
    /// The field as the REST caller sent it: a body field
    /// (`allocation_date`), a query parameter (`page_size`), a path
    /// parameter (`id`) or a header (`If-Match`, `Idempotency-Key`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    http: StatusCode,
    code: Code,
    message: String,
    reason: String,
    field_violations: Vec<FieldViolationBody>,
    metadata: BTreeMap<String, String>,
    /// Seconds to wait before retrying (`Retry-After`), for 429s.
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error the gateway itself raises, with the status of `reason`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        crate::metrics::refusal(reason.name);
        Self {
            http: reason.http(),
            code: reason.code,
            message: message.into(),
            reason: reason.name.to_owned(),
            field_violations: Vec::new(),
            metadata: BTreeMap::new(),
            retry_after: None,
        }
    }

    /// The same error answered with another HTTP status (one the HTTP
    /// library chose).
    pub fn with_status(mut self, http: StatusCode) -> Self {
        self.http = http;
        self
    }

    /// Bad input in `field`.
    pub fn invalid_field(reason: Reason, field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        let mut error = Self::new(reason, description.clone());
        error.metadata.insert("fields".to_owned(), field.to_owned());
        error.field_violations.push(FieldViolationBody {
            field: field.to_owned(),
            description,
        });
        error
    }

    /// The same error with each field `from` called `to`, in the list, in
    /// the descriptions and in the message: the caller sent it under that
    /// name (a header, a path parameter, a body's field). `renames` go
    /// longest name first, so that one is not taken for part of another.
    pub fn renamed(mut self, renames: &[(String, String)]) -> Self {
        let rename = |text: &str| {
            renames
                .iter()
                .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
        };
        let name = |field: &str| {
            renames
                .iter()
                .find(|(from, _)| from == field)
                .map_or_else(|| field.to_owned(), |(_, to)| to.clone())
        };
        for violation in &mut self.field_violations {
            violation.field = name(&violation.field);
            violation.description = rename(&violation.description);
        }
        if let Some(fields) = self.metadata.get_mut("fields") {
            *fields = fields.split(',').map(name).collect::<Vec<_>>().join(",");
        }
        if !self.field_violations.is_empty() {
            self.message = rename(&self.message);
        }
        self
    }

    /// The HTTP status of the response.
    pub fn http_status(&self) -> StatusCode {
        self.http
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let details = status.get_error_details();
        let Some(info) = details
            .error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
        else {
            // Not an answer of the service but of the way to it (the
            // upstream is down, the connection broke): log it, say little.
            tracing::error!(
                code = ?status.code(),
                message = %crate::domain::error::clip_bytes(status.message(), 256),
                "gRPC upstream failed"
            );
            let code = match status.code() {
                Code::DeadlineExceeded | Code::Cancelled => status.code(),
                _ => Code::Unavailable,
            };
            let error = Self::new(
                reasons::UPSTREAM_UNAVAILABLE,
                "the booking service cannot be reached right now; retry later",
            );
            return if code == Code::Unavailable {
                error
            } else {
                Self {
                    http: http_status(code),
                    code,
                    ..error
                }
            };
        };
        // Named as the gRPC service names them; the caller's call renames
        // them as it took them (see `renamed`).
        let field_violations = details
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| FieldViolationBody {
                        field: v.field.clone(),
                        description: v.description.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let retry_after = details
            .retry_info()
            .and_then(|info| info.retry_delay)
            .map(crate::grpc::edge::retry_after_seconds);
        // The catalogue's status for the reason, where it differs from the
        // code's (OVERLOADED is 503, not 429).
        let http = reasons::find(&info.reason)
            .filter(|reason| reason.code == status.code())
            .map_or_else(|| http_status(status.code()), Reason::http);
        Self {
            http,
            code: status.code(),
            message: status.message().to_owned(),
            reason: info.reason.clone(),
            retry_after,
            field_violations,
            metadata: info
                .metadata
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        }
    }
}

impl ApiError {
    /// The error's JSON body (also sent as an SSE `error` event).
    pub fn body(self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                code: self.http.as_u16(),
                status: code_name(self.code).to_owned(),
                message: self.message,
                reason: self.reason,
                field_violations: self.field_violations,
                metadata: self.metadata,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (http, code, retry_after) = (self.http, self.code, self.retry_after);
        let mut response = (http, Json(self.body())).into_response();
        let headers = response.headers_mut();
        if code == Code::Unauthenticated {
            headers.insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = retry_after {
            headers.insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The answer for a path the gateway does not serve.
pub async fn no_such_path(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        reasons::NO_SUCH_PATH,
        format!(
            "there is no {method} {}; see /docs for the API",
            Echo(uri.path())
        ),
    )
}

/// The answer for a method a path does not take.
///
/// A custom method (`/api/vehicles/{id}:retire`) takes POST alone, and its
/// resource (`/api/vehicles/{id}`) GET and PATCH, though the router reaches
/// both through one route whose methods it would list in `Allow`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = ApiError::new(
        reasons::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; see /docs for the API",
            Echo(uri.path())
        ),
    );
    // The dispatchers' POST is not the resource's own method either.
    let segments: Vec<&str> = uri.path().split('/').collect();
    let allow = match segments[..] {
        ["", "api", "employees" | "drivers" | "vehicles", id] if id.contains(':') => Some("POST"),
        ["", "api", "vehicles", "available"] => None,
        ["", "api", "employees" | "drivers" | "vehicles", _] => Some("GET,HEAD,PATCH"),
        _ => None,
    };
    match allow {
        Some(allow) => ([(axum::http::header::ALLOW, allow)], error).into_response(),
        None => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_grpc_gateway_maps_them() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn a_service_error_keeps_its_reason_and_metadata_and_names_fields_as_rest_sends_them() {
        use crate::domain::{Violation, ViolationReason};
        let status = tonic::Status::from(crate::domain::DomainError::Invalid(vec![
            Violation::required("allocation.vehicle_id"),
            Violation::new(
                "allocation.etag",
                ViolationReason::InvalidEtag,
                "allocation.etag \"x\" is not an etag",
            ),
            Violation::new(
                "request_id",
                ViolationReason::TooLong,
                "request_id is longer than 128 characters",
            ),
        ]));
        let renames = [
            ("allocation.vehicle_id", "vehicle_id"),
            ("allocation.etag", "If-Match"),
            ("request_id", "Idempotency-Key"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let error = ApiError::from(status).renamed(&renames);
        assert_eq!(error.http, StatusCode::BAD_REQUEST);
        assert_eq!(error.reason, "FIELD_REQUIRED");
        let fields: Vec<_> = error
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["vehicle_id", "If-Match", "Idempotency-Key"]);
        assert_eq!(
            error.field_violations[0].description,
            "vehicle_id is required"
        );
        assert_eq!(
            error.metadata["fields"],
            "vehicle_id,If-Match,Idempotency-Key"
        );
        assert!(!error.message.contains("allocation."), "{}", error.message);
    }

    #[test]
    fn a_transport_failure_reveals_nothing_of_the_upstream() {
        let error = ApiError::from(tonic::Status::unavailable(
            "tcp connect error: 10.0.0.7:50051 Connection refused",
        ));
        assert_eq!(error.http, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.reason, "UPSTREAM_UNAVAILABLE");
        assert!(!error.message.contains("10.0.0.7"));
        let error = ApiError::from(tonic::Status::internal("panic at src/x.rs"));
        assert_eq!(error.http, StatusCode::SERVICE_UNAVAILABLE);
    }
}
