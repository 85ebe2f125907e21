//! The edge of the gRPC server, which every call passes, from the network
//! and from the REST gateway alike: it authenticates the caller, applies the
//! per-principal rate limit, builds the [`RequestContext`] the handlers read,
//! and gives the request one log line, and a span when traces are on.
//!
//! The request id comes from the `x-request-id` header when the caller sends
//! one (the REST gateway does), and is made up otherwise. Health and
//! reflection are open to everyone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderName, Request, Response};
use tonic::Code;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::shares::{CallerSlots, NoSlot};
use crate::auth::failures::AuthFailures;
use crate::auth::rate::RateLimiter;
use crate::auth::{AuthError, Authenticator, ClientAddr, PeerCertificate};
use crate::clock::Clock;
use crate::domain::context::{RequestContext, caller_key};
use crate::metrics::Gauged;
use crate::reasons;

/// The header that carries a request's id across services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

// Names looked up on every call, as `HeaderName`s: a lookup by `&str`
// parses the name first.
const REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
const RELAYED: HeaderName = HeaderName::from_static(RELAYED_HEADER);
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");

/// A new request id, in UUID form: a random per-process prefix and a
/// counter. Unique without asking the kernel for randomness per request.
pub fn new_request_id() -> Arc<str> {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::now_v7().as_u64_pair().1);
    let id = uuid::Uuid::from_u64_pair(prefix, NEXT.fetch_add(1, Ordering::Relaxed));
    // Encoded rather than formatted, on the stack, then copied into the
    // `Arc` the call keeps: one allocation for a call without an id.
    Arc::from(
        &*id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
}

/// Whether a caller's request id is kept as sent: visible ASCII, at most
/// 128 bytes. Any other is replaced by [`new_request_id`], on the gRPC side
/// and in the REST gateway alike.
pub fn is_usable_request_id(value: &http::HeaderValue) -> bool {
    !value.is_empty() && value.len() <= 128 && value.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// What the edge needs: the authenticator, the rate limiter, the clock, and
/// the limits on requests in flight and on their time.
#[derive(Clone)]
pub struct EdgeLayer {
    auth: Arc<Authenticator>,
    limiter: Option<Arc<RateLimiter>>,
    failures: Arc<AuthFailures>,
    clock: Arc<dyn Clock>,
    /// One permit per request being handled; none left means shed.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Each caller's share of those permits.
    shares: Arc<CallerSlots>,
    /// Requests holding a permit, for `/metrics`.
    in_flight_gauge: metrics::Gauge,
    default_deadline: Duration,
}

impl EdgeLayer {
    pub fn new(
        auth: Arc<Authenticator>,
        limiter: Option<Arc<RateLimiter>>,
        clock: Arc<dyn Clock>,
        limits: &crate::server::ServerLimits,
    ) -> Self {
        Self {
            auth,
            limiter,
            failures: Arc::new(AuthFailures::new(limits.auth_failures)),
            clock,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
            shares: CallerSlots::new(limits.max_in_flight_per_caller(), limits.max_in_flight),
            in_flight_gauge: crate::metrics::requests_in_flight(),
            default_deadline: limits.default_deadline,
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            layer: self.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    layer: EdgeLayer,
}

/// Calls anyone may make: health checks and reflection.
fn is_open(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

impl<S, B, RB> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let request_id: Arc<str> = request
            .headers()
            .get(REQUEST_ID)
            .filter(|v| is_usable_request_id(v))
            .and_then(|v| v.to_str().ok())
            .map_or_else(new_request_id, Into::into);
        // With request lines filtered out there is nothing to log. The line
        // carries the call's fields itself; a span for them is opened only
        // for traces, as it would cost as much again as the line (the
        // telemetry issue's closing note has the figures).
        let logging = tracing::enabled!(tracing::Level::INFO);
        let span = if logging && crate::telemetry::tracing() {
            tracing::info_span!(
                "grpc",
                method = %request.uri().path(),
                request_id = %request_id,
                principal = tracing::field::Empty,
                roles = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        crate::telemetry::continue_trace(&span, request.headers());
        let started = Instant::now();
        let spanned = !span.is_disabled();
        Box::pin(
            async move {
                // The call's fields, for its line.
                // A `Uri` clone mostly shares its bytes rather than copying.
                let method = logging.then(|| request.uri().clone());
                #[cfg(debug_assertions)]
                let path = request.uri().path().to_owned();
                let mut caller = None;
                let handle = async {
                    // The caller's deadline when it is the shorter.
                    let budget = grpc_timeout(request.headers())
                        .map_or(layer.default_deadline, |t| t.min(layer.default_deadline));
                    let deadline = started + budget;
                    let open = is_open(request.uri().path());
                    // Health and reflection are never shed: health must
                    // answer truthfully under load.
                    let _hold = if open {
                        None
                    } else {
                        match Arc::clone(&layer.in_flight).try_acquire_owned() {
                            Ok(permit) => Some(Gauged::new(permit, &layer.in_flight_gauge)),
                            Err(_) => return Ok(overloaded(OVERLOADED_MESSAGE)),
                        }
                    };
                    let peer = peer_ip(&request);
                    let principal = if open {
                        None
                    } else {
                        let certificate = peer_certificate(&request);
                        let now = layer.clock.now();
                        // A peer that guessed wrong too often costs no
                        // signature checks until its bucket refills; its
                        // keys and lately verified tokens still work.
                        let limited = layer.failures.blocked(peer, now);
                        match layer
                            .auth
                            .authenticate(
                                request.headers(),
                                certificate.as_ref(),
                                now,
                                limited.is_none(),
                            )
                            .await
                        {
                            Ok(principal) => Some(principal),
                            Err(refused) if refused.unchecked => {
                                return Ok(rate_limited(limited.unwrap_or_default()));
                            }
                            Err(refused) => {
                                layer.failures.failed(peer, &refused, now);
                                return Ok(refusal(&refused.error));
                            }
                        }
                    };
                    let mut _share = None;
                    if let Some(principal) = principal {
                        if logging {
                            if spanned {
                                let span = tracing::Span::current();
                                span.record("principal", tracing::field::display(&principal.id));
                                span.record(
                                    "roles",
                                    tracing::field::display(principal.roles_list()),
                                );
                            }
                            caller = Some(Arc::clone(&principal));
                        }
                        let key = caller_key(&principal, peer);
                        if let Some(limiter) = &layer.limiter
                            && let Err(wait) = limiter.check(&key)
                        {
                            return Ok(rate_limited(wait));
                        }
                        // No caller holds more than its share, so one
                        // caller's flood leaves room for everyone else.
                        match layer.shares.take(key) {
                            Ok(share) => _share = Some(share),
                            Err(NoSlot::Caller) => return Ok(overloaded(CALLER_SHARE_MESSAGE)),
                            // Counted with the permits: not reached.
                            Err(NoSlot::Total) => return Ok(overloaded(OVERLOADED_MESSAGE)),
                        }
                        request.extensions_mut().insert(RequestContext {
                            principal,
                            request_id: Arc::clone(&request_id),
                            deadline,
                            peer,
                        });
                    }
                    // From when the call arrived, not from after
                    // authentication: tonic's own timer for `grpc-timeout`
                    // starts no earlier, so this one wins and the caller
                    // gets DEADLINE_EXCEEDED.
                    let until = tokio::time::Instant::from_std(deadline);
                    match tokio::time::timeout_at(until, inner.call(request)).await {
                        Ok(result) => result.map(codec_errors_as_callers),
                        Err(_) => Ok(deadline_exceeded(budget)),
                    }
                };
                // Lines logged on the way carry the call's id, whether or
                // not its span (or line) is shown.
                let result =
                    crate::telemetry::with_request_id(Arc::clone(&request_id), handle).await;
                #[cfg(debug_assertions)]
                if let Ok(response) = &result {
                    answers_as_declared(&path, response.headers());
                }
                if logging && let Ok(response) = &result {
                    let latency_us = started.elapsed().as_micros() as u64;
                    // Errors come back "trailers-only", with the status in
                    // the headers; a missing status means the call succeeded.
                    let code = super::metered::status_in(response.headers()).unwrap_or(Code::Ok);
                    use tracing::field::display;
                    let principal = caller.as_ref().map(|caller| display(&caller.id));
                    let roles = caller.as_ref().map(|caller| display(caller.roles_list()));
                    // The same fields with traces on or off, so that log
                    // queries do not depend on it.
                    tracing::info!(
                        method = method.as_ref().map(|uri| display(uri.path())),
                        request_id = %request_id,
                        principal,
                        roles,
                        code = ?code,
                        latency_us,
                        "grpc request"
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Holds a call's refusal to the reasons its call declares
/// ([`reasons::CALLS`]), in debug builds: the test suites then check that
/// the documentation lists every reason a call answers with. A refusal
/// sent in the stream's trailers (a watch ended) is not seen here.
#[cfg(debug_assertions)]
fn answers_as_declared(path: &str, headers: &http::HeaderMap) {
    use tonic_types::StatusExt as _;
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if let Some(info) = status.get_details_error_info() {
        assert!(
            reasons::answers(path, &info.reason),
            "{path} answered {}, which reasons::CALLS does not list for it",
            info.reason
        );
    }
}

/// The header a REST gateway adds to the calls it relays: the connection's
/// certificate is then the gateway's, not the caller's, and names no one.
/// Anyone may send it; it can only take a certificate's roles away.
pub const RELAYED_HEADER: &str = "x-relayed-by";

/// The verified client certificate: from a TLS connection (unless a gateway
/// relays the call), or passed on by the REST gateway in process.
fn peer_certificate<B>(request: &Request<B>) -> Option<rustls::pki_types::CertificateDer<'static>> {
    if !request.headers().contains_key(RELAYED)
        && let Some(info) = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()
    {
        return info.peer_certs().and_then(|certs| certs.first().cloned());
    }
    request
        .extensions()
        .get::<PeerCertificate>()
        .map(|cert| cert.0.clone())
}

/// The address the call came from: the gRPC connection's peer, or the REST
/// caller's, passed on by the gateway in process. A remote gateway's
/// callers all come from the gateway's address.
fn peer_ip<B>(request: &Request<B>) -> Option<std::net::IpAddr> {
    let extensions = request.extensions();
    let remote = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        });
    match remote {
        Some(addr) => Some(addr.ip().to_canonical()),
        None => extensions.get::<ClientAddr>().map(|client| client.0),
    }
}

/// The caller's `grpc-timeout` ("100m", "5S"...), if any.
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok().filter(|_| digits.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The codec's answers to a bad request message, which tonic gives codes
/// that blame the server, turned into the caller's fault with a reason: a
/// message that does not decode is INVALID_ARGUMENT (MALFORMED_REQUEST), one
/// over the size limit RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE), as the gRPC
/// status code document says. Statuses the handlers made carry details and
/// are left alone.
fn codec_errors_as_callers<RB: Default>(response: Response<RB>) -> Response<RB> {
    let headers = response.headers();
    // Most answers succeed, with no status until the trailers.
    if super::metered::status_in(headers).is_none_or(|code| code == Code::Ok)
        || headers.contains_key(GRPC_STATUS_DETAILS)
    {
        return response;
    }
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return response;
    };
    let message = status.message();
    let reason = match status.code() {
        Code::Internal
            if message.starts_with("failed to decode Protobuf message")
                || message.starts_with("protocol error")
                || message.starts_with("Unexpected EOF decoding stream") =>
        {
            reasons::MALFORMED_REQUEST
        }
        Code::OutOfRange if message.contains("message length too large") => {
            reasons::MESSAGE_TOO_LARGE
        }
        _ => return response,
    };
    let message = crate::domain::error::clip(message, 256);
    super::status::with_reason(reason, &message).into_http::<RB>()
}

/// UNAUTHENTICATED with the reason; never the credential.
fn refusal<RB: Default>(error: &AuthError) -> Response<RB> {
    let mut response =
        super::status::with_reason(error.reason(), &error.to_string()).into_http::<RB>();
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// RESOURCE_EXHAUSTED with a `RetryInfo` saying when to come back.
fn rate_limited<RB: Default>(wait: Duration) -> Response<RB> {
    super::status::with_retry(
        reasons::RATE_LIMITED,
        "too many requests from this caller; retry after the delay in RetryInfo",
        wait,
    )
    .into_http::<RB>()
}

const OVERLOADED_MESSAGE: &str = "the server is handling as many requests as it takes at once; retry after a short, random pause";
const CALLER_SHARE_MESSAGE: &str = "this caller has as many requests in flight as one caller may (MAX_IN_FLIGHT_PER_CALLER); retry after a short, random pause";

/// RESOURCE_EXHAUSTED (OVERLOADED): every in-flight slot is taken, or the
/// caller's share of them.
fn overloaded<RB: Default>(message: &'static str) -> Response<RB> {
    super::status::with_retry(reasons::OVERLOADED, message, Duration::from_secs(1))
        .into_http::<RB>()
}

/// DEADLINE_EXCEEDED (TIMEOUT) after `budget`.
fn deadline_exceeded<RB: Default>(budget: Duration) -> Response<RB> {
    super::status::with_reason(
        reasons::TIMEOUT,
        &format!(
            "the call did not finish within its deadline of {} ms",
            budget.as_millis()
        ),
    )
    .into_http::<RB>()
}

/// Whole seconds to wait, rounded up, as `Retry-After` takes them.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let timeout = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("7"), None);
        assert_eq!(timeout("123456789S"), None);
        assert_eq!(timeout("S"), None);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
    }

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
        let ids: std::collections::HashSet<Arc<str>> =
            (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    }
}
