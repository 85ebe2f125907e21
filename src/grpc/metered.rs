//! go-grpc-prometheus's server metrics for every call the server answers,
//! from the network and from the REST gateway in process alike, refusals at
//! the edge included: `grpc_server_started_total` when a call arrives,
//! `grpc_server_handled_total` and `grpc_server_handling_seconds` when its
//! status is sent (in the headers of a trailers-only answer, or in the
//! trailers after the messages). A call whose response is dropped before its
//! status (the client went away) is handled as CANCELLED.
//!
//! The methods are read from the services' descriptors once, so a label
//! never holds a path a caller made up: any other path counts as
//! `unknown/unknown`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics::Label;
use prost::Message as _;
use tonic::Code;
use tower::{Layer, Service};

use crate::metrics::{
    GRPC_HANDLED, GRPC_HANDLING_SECONDS, GRPC_STARTED, LocalCounter, LocalHistogram,
};

/// Code names as Go's `codes.Code.String()` spells them, which is what
/// go-grpc-prometheus puts in `grpc_code`.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// One method's series, updated in per-thread buffers: a call only copies
/// their ids.
#[derive(Clone, Copy)]
struct MethodMetrics {
    started: LocalCounter,
    handling: LocalHistogram,
    /// By code; a series shows once a call ends with its code.
    handled: [LocalCounter; 17],
}

impl MethodMetrics {
    fn new(grpc_type: &'static str, service: &str, method: &str) -> Self {
        let labels = || {
            vec![
                Label::new("grpc_type", grpc_type),
                Label::new("grpc_service", service.to_owned()),
                Label::new("grpc_method", method.to_owned()),
            ]
        };
        Self {
            started: LocalCounter::new(GRPC_STARTED, labels()),
            handling: LocalHistogram::new(GRPC_HANDLING_SECONDS, labels()),
            handled: CODE_NAMES.map(|code| {
                let mut labels = labels();
                labels.push(Label::new("grpc_code", code));
                LocalCounter::on_first_use(GRPC_HANDLED, labels)
            }),
        }
    }

    fn handled(&self, code: Code) -> LocalCounter {
        self.handled[(code as usize).min(CODE_NAMES.len() - 1)]
    }
}

/// Every method of the services in `descriptor_sets` (encoded
/// `FileDescriptorSet`s), by path: (`/package.Service/Method`, type,
/// service, method).
pub fn methods_of(descriptor_sets: &[&[u8]]) -> Vec<(String, &'static str, String, String)> {
    let mut methods = Vec::new();
    for encoded in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                let name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                for method in &service.method {
                    let grpc_type = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    let path = format!("/{name}/{}", method.name());
                    methods.push((path, grpc_type, name.clone(), method.name().to_owned()));
                }
            }
        }
    }
    methods
}

/// The layer; see the module documentation.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    /// Looked up by every call; foldhash, as the paths are a fixed set.
    methods: Arc<HashMap<String, MethodMetrics, foldhash::fast::RandomState>>,
    unknown: MethodMetrics,
}

impl GrpcMetricsLayer {
    /// Series for every method in `descriptor_sets`.
    pub fn new(descriptor_sets: &[&[u8]]) -> Self {
        let methods = methods_of(descriptor_sets)
            .into_iter()
            .map(|(path, grpc_type, service, method)| {
                (path, MethodMetrics::new(grpc_type, &service, &method))
            })
            .collect();
        Self {
            methods: Arc::new(methods),
            unknown: MethodMetrics::new("unary", "unknown", "unknown"),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

impl<S, B, RB> Service<Request<B>> for Metered<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<Observed<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = *self
            .layer
            .methods
            .get(request.uri().path())
            .unwrap_or(&self.layer.unknown);
        method.started.increment(1);
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let in_headers = status_in(response.headers());
            Ok(response.map(|body| Observed {
                body,
                call: Some(Call {
                    method,
                    started,
                    in_headers,
                }),
            }))
        })
    }
}

/// The `grpc-status` in `headers`, if any.
pub(super) fn status_in(headers: &http::HeaderMap) -> Option<Code> {
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    headers
        .get(GRPC_STATUS)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

/// A call whose status is not counted yet.
struct Call {
    method: MethodMetrics,
    started: Instant,
    /// The status of a trailers-only answer.
    in_headers: Option<Code>,
}

impl Call {
    fn finish(self, code: Code) {
        self.method.handled(code).increment(1);
        self.method
            .handling
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// A response body that counts its call as handled when the status goes
/// out, or when it is dropped before.
pub struct Observed<B> {
    body: B,
    call: Option<Call>,
}

impl<B> Observed<B> {
    fn finish(&mut self, code: Option<Code>) {
        if let Some(call) = self.call.take() {
            let code = code.or(call.in_headers).unwrap_or(Code::Unknown);
            call.finish(code);
        }
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            let code = call.in_headers.unwrap_or(Code::Cancelled);
            call.finish(code);
        }
    }
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_in(trailers);
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(Some(Code::Unknown)),
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptors_with_their_types() {
        let methods = methods_of(&[crate::proto::FILE_DESCRIPTOR_SET]);
        let find = |path: &str| methods.iter().find(|m| m.0 == path).cloned();
        let create = find("/vehicle_allocation.v1.AllocationService/CreateAllocation").unwrap();
        assert_eq!(
            (create.1, create.2.as_str(), create.3.as_str()),
            (
                "unary",
                "vehicle_allocation.v1.AllocationService",
                "CreateAllocation"
            )
        );
        let watch = find("/vehicle_allocation.v1.EventService/WatchEvents").unwrap();
        assert_eq!(watch.1, "server_stream");
        let health = methods_of(&[tonic_health::pb::FILE_DESCRIPTOR_SET]);
        assert!(health.iter().any(|m| m.0 == "/grpc.health.v1.Health/Watch"));
    }

    #[test]
    fn code_names_are_go_s() {
        assert_eq!(CODE_NAMES[Code::Ok as usize], "OK");
        assert_eq!(CODE_NAMES[Code::Cancelled as usize], "Canceled");
        assert_eq!(
            CODE_NAMES[Code::Unauthenticated as usize],
            "Unauthenticated"
        );
        assert_eq!(
            CODE_NAMES[Code::FailedPrecondition as usize],
            "FailedPrecondition"
        );
    }
}
