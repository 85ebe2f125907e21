//! Metrics and traces as an operator's tools read them. A binary of its
//! own: the metrics recorder and the tracing subscriber are one per
//! process, so no other test's calls may move the counters these tests
//! count; the tests here take turns.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../support/identity.rs"]
mod identity;
#[allow(dead_code)]
#[path = "../support/instrumented_store.rs"]
mod instrumented_store;

mod metrics;
mod traces;

use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use vehicle_allocation::telemetry::{self, LogFormat, OtlpProtocol, Telemetry, TraceSettings};

/// One test at a time: they all read the same process-wide counters.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An OTLP/gRPC receiver in this process, the service's subscriber
/// exporting to it, and the log lines it wrote.
pub struct Collector {
    /// Where it listens, for a service process of its own.
    pub addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    logs: Logs,
    telemetry: Telemetry,
}

/// The log lines, as the service wrote them.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A span, and the `service.name` of the process that sent it.
struct Received {
    service: String,
    span: Span,
}

struct Receiver(Arc<Mutex<Vec<Received>>>);

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            any_value::Value::StringValue(name) => name.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            let spans = resource_spans.scope_spans.into_iter().flat_map(|s| s.spans);
            received.extend(spans.map(|span| Received {
                service: service.clone(),
                span,
            }));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Sends the spans waiting for their batch, and returns every span
    /// received of the trace `trace_id` (hex).
    pub async fn trace(&self, trace_id: &str) -> Vec<Span> {
        let telemetry = &self.telemetry;
        // The flush blocks until the batch is exported.
        tokio::task::block_in_place(|| telemetry.flush_traces());
        self.received(trace_id)
    }

    /// [`Collector::trace`] until it holds a span of each of `names`, for
    /// a span that ends just after the caller has its response; at most
    /// 2 s.
    pub async fn trace_with(&self, trace_id: &str, names: &[&str]) -> Vec<Span> {
        let mut spans = Vec::new();
        for _ in 0..100 {
            spans = self.trace(trace_id).await;
            if names
                .iter()
                .all(|name| spans.iter().any(|s| s.name == *name))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        spans
    }

    /// The spans of the trace `trace_id` (hex) received so far, from any
    /// process.
    pub fn received(&self, trace_id: &str) -> Vec<Span> {
        self.received_from(trace_id)
            .into_iter()
            .map(|(_, span)| span)
            .collect()
    }

    /// [`Collector::received`], each span with its sender's `service.name`.
    pub fn received_from(&self, trace_id: &str) -> Vec<(String, Span)> {
        let id = hex(trace_id);
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.span.trace_id == id)
            .map(|r| (r.service.clone(), r.span.clone()))
            .collect()
    }

    /// The log lines written so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap()).into_owned()
    }

    /// The first log line `wanted` says yes to, waiting for it as long as
    /// a line may wait for its batch and then some; at most 10 s.
    pub async fn log_line(&self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        for _ in 0..500 {
            if let Some(line) = self.logs().lines().find(|line| wanted(line)) {
                return Some(line.to_owned());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The process's collector, started on a runtime of its own that outlives
/// each test's, before any test builds an app.
pub fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let spans = Arc::new(Mutex::new(Vec::new()));
                tokio::spawn(
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(Receiver(Arc::clone(&spans))))
                        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                            listener,
                        )),
                );
                let logs = Logs::default();
                let telemetry = telemetry::init_writing_to(
                    LogFormat::Json,
                    Some(TraceSettings {
                        endpoint: format!("http://{addr}"),
                        protocol: OtlpProtocol::Grpc,
                        service_name: "vehicle-allocation-test".into(),
                    }),
                    logs.clone(),
                    false,
                )
                .unwrap();
                ready
                    .send(Collector {
                        addr,
                        spans,
                        logs,
                        telemetry,
                    })
                    .ok()
                    .unwrap();
                std::future::pending::<()>().await;
            });
        });
        started.recv().unwrap()
    })
}
