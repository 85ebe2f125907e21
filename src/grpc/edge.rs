//! A tracing span and one log line per gRPC request.
//!
//! The span carries the method and a request id, so every log line written
//! while serving the request can be tied to it. The id comes from the
//! `x-request-id` header when the caller sends one (the REST gateway does),
//! and is made up otherwise.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};
use tracing::Instrument as _;

/// The header that carries a request's id across services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A new request id, in UUID form: a random per-process prefix and a
/// counter. Unique without asking the kernel for randomness per request.
pub fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::now_v7().as_u64_pair().1);
    uuid::Uuid::from_u64_pair(prefix, NEXT.fetch_add(1, Ordering::Relaxed)).to_string()
}

/// Whether a caller's request id is kept as sent: visible ASCII, at most
/// 128 bytes. Any other is replaced by [`new_request_id`], on the gRPC side
/// and in the REST gateway alike.
pub fn is_usable_request_id(value: &http::HeaderValue) -> bool {
    !value.is_empty() && value.len() <= 128 && value.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// Wraps a service in [`RequestLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLogLayer;

impl<S> Layer<S> for RequestLogLayer {
    type Service = RequestLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestLog { inner }
    }
}

/// Gives each request a span and logs its outcome.
#[derive(Debug, Clone)]
pub struct RequestLog<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // With request lines filtered out there is nothing to tie together:
        // no id to make up, no span to open.
        if !tracing::enabled!(tracing::Level::INFO) {
            return Box::pin(self.inner.call(request));
        }
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .filter(|v| is_usable_request_id(v))
            .and_then(|v| v.to_str().ok())
            .map_or_else(new_request_id, str::to_owned);
        let span = tracing::info_span!(
            "grpc",
            method = %request.uri().path(),
            request_id = %request_id,
        );
        let started = Instant::now();
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = response.await;
                let latency_us = started.elapsed().as_micros() as u64;
                if let Ok(response) = &result {
                    // Errors come back "trailers-only", with the status in the
                    // headers; a missing status means the call succeeded.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                    tracing::info!(code = ?code, latency_us, "grpc request");
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_request_ids_are_kept() {
        let usable = |v: &str| is_usable_request_id(&http::HeaderValue::from_str(v).unwrap());
        assert!(usable("req-42"));
        assert!(usable(&"x".repeat(128)));
        assert!(!usable(""));
        assert!(!usable(&"x".repeat(129)));
        assert!(!usable("two words"));
        assert!(!usable("tab\there"));
    }

    #[test]
    fn request_ids_are_unique_uuid_shaped_strings() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    }
}
