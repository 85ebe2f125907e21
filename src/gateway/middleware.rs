//! What every HTTP request goes through: a request id and a log line, and a
//! time limit.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use super::error::ApiError;
use crate::auth::{API_KEY_HEADER, ClientAddr, PeerCertificate};
use crate::grpc::edge::RELAYED_HEADER;
use crate::grpc::{REQUEST_ID_HEADER, is_usable_request_id, new_request_id};
use crate::reasons;

/// What the gateway passes on to the gRPC call: the request's id and the
/// caller's credentials, which the gRPC edge checks. The gateway decides
/// nothing about them.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: HeaderValue,
    authorization: Option<HeaderValue>,
    api_key: Option<HeaderValue>,
    certificate: Option<PeerCertificate>,
    client: Option<ClientAddr>,
}

impl RequestId {
    /// A gRPC request carrying this id, so the gRPC side logs it too, and
    /// the caller's credentials.
    pub fn grpc<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        let mut pass = |name: &'static str, value: Option<&HeaderValue>| {
            if let Some(value) = value
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
            {
                metadata.insert(name, value);
            }
        };
        pass(REQUEST_ID_HEADER, Some(&self.id));
        // The connection's certificate (a remote upstream's view) is the
        // gateway's own: it must not stand for the REST caller.
        pass(
            RELAYED_HEADER,
            Some(&HeaderValue::from_static("vehicle-allocation-gateway")),
        );
        pass("authorization", self.authorization.as_ref());
        pass(API_KEY_HEADER, self.api_key.as_ref());
        // The caller's trace goes on into the gRPC call.
        crate::telemetry::inject_current(request.metadata_mut());
        // In process only: a remote upstream sees the gateway's own
        // certificate, not the REST caller's.
        if let Some(certificate) = &self.certificate {
            request.extensions_mut().insert(certificate.clone());
        }
        if let Some(client) = self.client {
            request.extensions_mut().insert(client);
        }
        request
    }
}

/// Takes the caller's `x-request-id` (if [`is_usable_request_id`]) or makes
/// one up, serves the request in a span carrying it, logs the outcome
/// and returns the id on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|v| is_usable_request_id(v))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&new_request_id()).expect("a UUID is ASCII"));
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id.to_str().unwrap_or_default(),
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    let forwarded = RequestId {
        id: id.clone(),
        authorization: request.headers().get(header::AUTHORIZATION).cloned(),
        api_key: request.headers().get(API_KEY_HEADER).cloned(),
        certificate: request.extensions().get::<PeerCertificate>().cloned(),
        client: request.extensions().get::<ClientAddr>().copied(),
    };
    request.extensions_mut().insert(forwarded);
    let started = Instant::now();
    let method = method_label(request.method());
    // The template the router matched, never the raw path: a path holds ids.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    async move {
        let mut response = next.run(request).await;
        let took = started.elapsed();
        let latency_us = took.as_micros() as u64;
        crate::metrics::http_request(method, route, response.status(), took);
        tracing::info!(
            status = response.status().as_u16(),
            latency_us,
            "http request"
        );
        response.headers_mut().insert(REQUEST_ID_HEADER, id);
        response
    }
    .instrument(span)
    .await
}

/// The `route` of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// The method as a label: the standard ones by name, any other as "other".
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Answers 504 when the request takes longer than the configured limit.
pub async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            reasons::TIMEOUT,
            format!("the request took longer than {limit:?}"),
        )
        .into_response(),
    }
}

/// Rewrites any error response that is not already JSON (from a layer or a
/// library route, e.g. a missing file under `/docs`) into the gateway's
/// error shape, keeping its status and headers.
pub async fn json_errors(request: Request, next: Next) -> Response {
    if let Some(refused) = request.extensions().get::<crate::server::Refused>() {
        return early_refusal(*refused);
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_error || is_json {
        return response;
    }
    let reason = match status {
        StatusCode::NOT_FOUND => reasons::NO_SUCH_PATH,
        StatusCode::METHOD_NOT_ALLOWED => reasons::METHOD_NOT_ALLOWED,
        StatusCode::PAYLOAD_TOO_LARGE => reasons::BODY_TOO_LARGE,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => reasons::TIMEOUT,
        s if s.is_client_error() => reasons::BAD_REQUEST,
        _ => reasons::INTERNAL,
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    let (mut parts, _) = response.into_parts();
    let mut replaced = ApiError::new(reason, message)
        .with_status(status)
        .into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    replaced.headers_mut().extend(parts.headers);
    replaced
}

/// Ends every JSON body with a newline, as a terminal expects (`curl`
/// output then ends its line). A JSON body is whole in memory already (a
/// page at most), never a stream, so it is read back and extended here.
pub async fn json_newline(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // Only a body of known length: never a stream.
    if !is_json
        || http_body::Body::size_hint(response.body())
            .exact()
            .is_none()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(reasons::INTERNAL, "internal error").into_response();
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut body = Vec::with_capacity(bytes.len() + 1);
    body.extend_from_slice(&bytes);
    body.push(b'\n');
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The answer to a request the connection layer refused before reading it
/// ([`crate::server::Refused`]): given by [`json_errors`], inside the
/// request-id and CORS layers, so that it carries their headers like every
/// other answer.
fn early_refusal(refused: crate::server::Refused) -> Response {
    use crate::server::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES, Refused};
    let error = match refused {
        Refused::UriTooLong => ApiError::new(
            reasons::URI_TOO_LONG,
            format!(
                "the path and query are longer than {} KiB",
                MAX_URI_BYTES / 1024
            ),
        ),
        Refused::HeadersTooLarge => ApiError::new(
            reasons::HEADERS_TOO_LARGE,
            format!(
                "the request carries more than {MAX_HEADERS} headers or {} KiB of them",
                MAX_HEADER_BYTES / 1024
            ),
        ),
        Refused::BodyTooLarge => ApiError::new(
            reasons::BODY_TOO_LARGE,
            format!(
                "the request body is larger than {} KiB",
                crate::server::MAX_BODY_BYTES / 1024
            ),
        ),
        Refused::UnreadableBody => ApiError::new(
            reasons::UNREADABLE_BODY,
            "the request body could not be read in time",
        ),
    };
    error.into_response()
}
