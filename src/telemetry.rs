//! Logging and tracing.
//!
//! Logs: `tracing` events to stderr, as text or JSON lines, filtered by
//! `RUST_LOG` (default `info`). A request only formats its line and appends
//! it to a batch ([`batch`]); batches are written by a background thread
//! (`tracing-appender`), so a request never waits for stderr. A line
//! waits at most [`BATCH_INTERVAL`] for its batch to be handed on. When the
//! appender's queue is full (stderr blocked, e.g. a stalled collector)
//! batches are dropped rather than slowing requests down.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the service's spans (the
//! REST request, its gRPC call, the store operation, the cache call) go to
//! that OTLP collector (over gRPC, or HTTP as `OTEL_EXPORTER_OTLP_PROTOCOL`
//! says), sampled as `OTEL_TRACES_SAMPLER` says. A W3C
//! `traceparent` from the caller is continued, the gateway passes it on to
//! its gRPC call, and the trace id is a field of the request's span, so the
//! JSON log lines carry it. Without the variable nothing of this runs.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

mod batch;
mod line_time;
mod plain;
#[cfg(test)]
pub(crate) mod testing;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The most a batch of lines holds, and so one write to stderr.
const BATCH_BYTES: usize = 32 * 1024;

/// The longest a line waits for its batch to be handed to the writer.
pub const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Batches the appender's queue holds before new ones are dropped: 32 MiB.
const QUEUED_BATCHES: usize = 1024;

/// Whether spans are exported; when not, no trace context is read or sent.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The collector: `http://jaeger:4317` over gRPC, the full URL
    /// (`http://collector:4318/v1/traces`) over HTTP.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
}

/// How spans reach the collector, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `grpc`, usually on port 4317: this service's default.
    Grpc,
    /// `http/protobuf`, usually on port 4318.
    HttpProtobuf,
}

impl TraceSettings {
    /// From the OpenTelemetry SDK's standard variables: traces are on when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// is set; `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` chooses `grpc` (the default) or
    /// `http/protobuf`; `OTEL_SERVICE_NAME` defaults to `vehicle-allocation`.
    pub fn from_env() -> Result<Option<Self>, TraceSetupError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`], reading the variables through `var`.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceSetupError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let traces_endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let base = var("OTEL_EXPORTER_OTLP_ENDPOINT");
        if traces_endpoint.is_none() && base.is_none() {
            // Off: the protocol is not looked at (a fleet-wide setting for
            // other services must not stop this one).
            return Ok(None);
        }
        let protocol = match [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|name| var(name).map(|value| (name, value)))
        {
            None => OtlpProtocol::Grpc,
            Some((_, value)) if value.trim() == "grpc" => OtlpProtocol::Grpc,
            Some((_, value)) if value.trim() == "http/protobuf" => OtlpProtocol::HttpProtobuf,
            Some((variable, value)) => return Err(TraceSetupError::Protocol { variable, value }),
        };
        // The signal's own endpoint is used as it is; over HTTP the
        // general one is a base that the signal's path is added to.
        let endpoint = match (traces_endpoint, base) {
            (Some(endpoint), _) => endpoint,
            (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
                format!("{}/v1/traces", base.trim_end_matches('/'))
            }
            (None, base) => base.unwrap_or_default(),
        };
        Ok(Some(Self {
            endpoint,
            protocol,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "vehicle-allocation".into()),
        }))
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("cannot set up the OTLP trace exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error(
        "{variable}={value:?}: the OTLP protocols supported are \"grpc\" and \"http/protobuf\""
    )]
    Protocol {
        variable: &'static str,
        value: String,
    },
}

/// Logging and tracing, running: keep it until the process ends. Dropping
/// it writes out the queued lines and sends the spans still waiting.
pub struct Telemetry {
    // Dropped first: the last batch goes to the appender, which then
    // writes out what it holds.
    _log_batches: batch::BatchGuard,
    _log_writer: WorkerGuard,
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans that wait for their batch now.
    pub fn flush_traces(&self) {
        if let Some(traces) = &self.traces {
            let _ = traces.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(traces) = self.traces.take() {
            let _ = traces.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, at startup; with `traces`,
/// from within the Tokio runtime, where spans are exported.
pub fn init(
    format: LogFormat,
    traces: Option<TraceSettings>,
) -> Result<Telemetry, TraceSetupError> {
    let ansi = std::io::stderr().is_terminal();
    init_writing_to(format, traces, std::io::stderr(), ansi)
}

/// [`init`], with the log lines written to `out` (tests read them).
pub fn init_writing_to<W: std::io::Write + Send + 'static>(
    format: LogFormat,
    traces: Option<TraceSettings>,
    out: W,
    ansi: bool,
) -> Result<Telemetry, TraceSetupError> {
    let provider = traces.map(tracer_provider).transpose()?;
    // The service's own spans, the store's and the cache's (debug) included.
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("vehicle-allocation"))
            .with_filter(Targets::new().with_target("vehicle_allocation", Level::DEBUG))
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (appender, guard) = appender(out, QUEUED_BATCHES);
    let (writer, batches) = batch::Batches::new(appender, BATCH_BYTES, BATCH_INTERVAL);
    // Two stacks rather than an optional layer: an absent layer would make
    // every disabled span and event look wanted, and cost at each call.
    let registry = tracing_subscriber::registry();
    match otel {
        Some(otel) => registry
            .with(otel)
            .with(lines(format, filter, writer, ansi))
            .init(),
        None => registry.with(lines(format, filter, writer, ansi)).init(),
    }
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        TRACING.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry {
        _log_batches: batches,
        _log_writer: guard,
        traces: provider,
    })
}

/// The thread that writes the batches to `out`, holding at most `queued`
/// of them; when they are that many, new ones are dropped.
fn appender<W: std::io::Write + Send + 'static>(
    out: W,
    queued: usize,
) -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .buffered_lines_limit(queued)
        .lossy(true)
        .thread_name("log-writer")
        .finish(out)
}

/// The log lines' layer.
fn lines<S>(
    format: LogFormat,
    filter: EnvFilter,
    writer: batch::Batches<tracing_appender::non_blocking::NonBlocking>,
    ansi: bool,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // Colours only for a person at a terminal, not in files or collectors.
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_timer(line_time::LineTime)
        .with_writer(writer);
    match format {
        LogFormat::Text if ansi => lines.with_filter(filter).boxed(),
        LogFormat::Text => lines
            .fmt_fields(plain::PlainFields)
            .event_format(plain::PlainLine {
                timer: line_time::LineTime,
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    }
}

fn tracer_provider(settings: TraceSettings) -> Result<SdkTracerProvider, TraceSetupError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => builder
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .build(),
        OtlpProtocol::HttpProtobuf => {
            // Its HTTP client takes the process's default TLS provider.
            crate::tls::install_default_provider();
            builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.endpoint.clone())
                .build()
        }
    }
    .map_err(|source| TraceSetupError::Exporter {
        endpoint: settings.endpoint.clone(),
        source,
    })?;
    // Exported in batches from a task of the runtime; the sampler is the
    // SDK's, read from OTEL_TRACES_SAMPLER (parent-based, always on, by
    // default).
    let batches =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_resource(resource)
        .build())
}

/// Whether spans are exported.
pub fn tracing() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Makes `span` continue the caller's trace (a W3C `traceparent` in
/// `headers`), and records the trace id in its `trace_id` field, so the
/// request's log lines carry it. Nothing when traces are off.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !tracing() || span.is_disabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

tokio::task_local! {
    /// The id of the gRPC call a task serves.
    static REQUEST_ID: std::sync::Arc<str>;
}

/// Serves a gRPC call with the id `id`: see [`request_id`].
pub fn with_request_id<F: std::future::Future>(
    id: std::sync::Arc<str>,
    serve: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(id, serve)
}

/// The id of the gRPC call being served, for the lines logged while
/// serving it (a refused token, a store failure), so they can be matched
/// with the call's own line whatever `RUST_LOG` lets through. Logged as
/// `request_id = telemetry::request_id()`, which adds nothing outside one.
pub fn request_id() -> Option<tracing::field::DisplayValue<std::sync::Arc<str>>> {
    REQUEST_ID
        .try_with(std::sync::Arc::clone)
        .ok()
        .map(tracing::field::display)
}

/// Puts the current span's trace context into `metadata` of an outgoing
/// call. Nothing when traces are off.
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    if !tracing() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

    fn settings(vars: &[(&str, &str)]) -> Result<Option<TraceSettings>, TraceSetupError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        TraceSettings::from_vars(|name| vars.get(name).cloned())
    }

    fn on(vars: &[(&str, &str)]) -> (String, OtlpProtocol) {
        let settings = settings(vars).unwrap().expect("traces on");
        (settings.endpoint, settings.protocol)
    }

    #[test]
    fn traces_are_off_without_an_endpoint() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(settings(&[(ENDPOINT, " ")]).unwrap(), None);
        assert_eq!(settings(&[(PROTOCOL, "http/protobuf")]).unwrap(), None);
        // A protocol this service does not speak matters only once on.
        assert_eq!(settings(&[(PROTOCOL, "http/json")]).unwrap(), None);
    }

    #[test]
    fn endpoint_and_protocol_follow_the_sdk_s_variables() {
        let grpc = settings(&[(ENDPOINT, "http://collector:4317")])
            .unwrap()
            .unwrap();
        assert_eq!(
            grpc,
            TraceSettings {
                endpoint: "http://collector:4317".into(),
                protocol: OtlpProtocol::Grpc,
                service_name: "vehicle-allocation".into(),
            }
        );
        // Over HTTP the general endpoint is a base for the signal's path.
        assert_eq!(
            on(&[
                (ENDPOINT, "http://collector:4318/"),
                (PROTOCOL, "http/protobuf")
            ]),
            (
                "http://collector:4318/v1/traces".into(),
                OtlpProtocol::HttpProtobuf
            )
        );
        // The signal's own endpoint and protocol come first, used as they are.
        assert_eq!(
            on(&[
                (ENDPOINT, "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:4318/custom"
                ),
                (PROTOCOL, "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ]),
            (
                "http://traces:4318/custom".into(),
                OtlpProtocol::HttpProtobuf
            )
        );
        let named = settings(&[(ENDPOINT, "http://c:4317"), ("OTEL_SERVICE_NAME", "fleet")]);
        assert_eq!(named.unwrap().unwrap().service_name, "fleet");
    }

    #[test]
    fn an_unknown_protocol_is_refused_naming_its_variable() {
        let error = settings(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "http/json")])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""),
            "{error}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_a_collector_over_http() {
        use opentelemetry::trace::Tracer as _;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message as _;

        // An OTLP/HTTP receiver, passing on what it is sent.
        let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
        let receiver = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: http::HeaderMap, body: axum::body::Bytes| async move {
                    let _ = sent.send((headers, body));
                    http::StatusCode::OK
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, receiver).await });

        let settings = settings(&[
            (ENDPOINT, &base),
            (PROTOCOL, "http/protobuf"),
            ("OTEL_SERVICE_NAME", "over-http"),
        ])
        .unwrap()
        .unwrap();
        let provider = tracer_provider(settings).unwrap();
        provider.tracer("test").in_span("probe", |_| {});
        // Flushing waits for the exporting task on this runtime: from
        // another thread, with a worker free to run the task.
        let flushing = provider.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush())
            .await
            .unwrap()
            .unwrap();

        // The flush has sent it: the wait only keeps a failure from hanging.
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv());
        let (headers, body) = wait.await.expect("nothing received").unwrap();
        assert_eq!(
            headers[http::header::CONTENT_TYPE],
            "application/x-protobuf"
        );
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        let [resource_spans] = &request.resource_spans[..] else {
            panic!("one resource: {request:?}")
        };
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.as_ref());
        assert_eq!(service, Some(&Value::StringValue("over-http".into())));
        let names: Vec<_> = resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| &scope.spans)
            .map(|span| span.name.as_str())
            .collect();
        assert_eq!(names, ["probe"]);
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}
