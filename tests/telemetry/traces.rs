//! One trace per REST request: the gateway's span, its gRPC call's and the
//! store's and cache's under it, continuing the caller's `traceparent`, and
//! the trace id in the JSON log lines.

use std::collections::HashMap;

use reqwest::StatusCode;

use crate::helpers::spawn_app;
use crate::{SERIAL, collector, hex};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_is_one_trace_from_the_gateway_through_grpc_to_the_store() {
    let _turn = SERIAL.lock().await;
    let collector = collector();
    let app = spawn_app().await;
    let booked = app.book(0, 1, 1).await.unwrap();

    // A first read of the booking: the cache misses and the store answers.
    let response = app
        .http
        .get(app.url(&format!("/api/allocations/{}", booked.id)))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let spans = collector.trace_with(TRACE_ID, &["http"]).await;
    let by_name: HashMap<&str, Vec<_>> = spans.iter().fold(HashMap::new(), |mut map, span| {
        map.entry(span.name.as_str()).or_default().push(span);
        map
    });
    let one = |name: &str| {
        let found = by_name.get(name).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(found.len(), 1, "one {name} span in {by_name:?}");
        found[0]
    };
    let (http, grpc, store, cache) = (one("http"), one("grpc"), one("store"), one("cache"));
    // The caller's span is the gateway's parent; each layer's span is the
    // parent of the next.
    assert_eq!(http.parent_span_id, hex(CALLER_SPAN));
    assert_eq!(grpc.parent_span_id, http.span_id, "the gateway's call");
    assert_eq!(store.parent_span_id, grpc.span_id);
    assert_eq!(cache.parent_span_id, grpc.span_id);

    // The request's log lines carry the trace id.
    let line = collector
        .log_line(|line| {
            line.contains("\"message\":\"grpc request\"")
                && line.contains(&format!("\"trace_id\":\"{TRACE_ID}\""))
        })
        .await;
    let line = line.expect("no request log line with the trace id");
    // The call's own fields are where they are with traces off, so that
    // log queries do not depend on traces.
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["principal"], "anonymous", "{line}");
    assert_eq!(line["code"], "Ok", "{line}");
    assert!(
        line["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("/vehicle_allocation.v1.")),
        "{line}"
    );
    app.stop().await;
}

/// A gateway of its own in front of a remote gRPC server: the trace goes on
/// over the wire, in the `traceparent` the gateway sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_alone_passes_the_trace_on_to_its_upstream() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let _turn = SERIAL.lock().await;
    let collector = collector();
    let backend = spawn_app().await;
    let booked = backend.book(0, 1, 1).await.unwrap();
    let mut settings =
        crate::helpers::plain_settings(std::path::Path::new("/nonexistent/never-opened"));
    settings.grpc_upstream = Some(format!("http://{}", backend.channel_addr()));
    let gateway = vehicle_allocation::app::Application::build(settings)
        .await
        .unwrap();
    let base = format!("http://{}", gateway.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run_until(async {
        let _ = stopped.await;
    }));
    let response = reqwest::Client::new()
        .get(format!("{base}/api/allocations/{}", booked.id))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let spans = collector.trace_with(TRACE, &["grpc", "http"]).await;
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    assert_eq!(named("http").parent_span_id, hex(CALLER_SPAN));
    assert_eq!(named("grpc").parent_span_id, named("http").span_id);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    backend.stop().await;
}

/// `OTEL_TRACES_SAMPLER` reaches the SDK. The service, as a process of its
/// own, samples by trace id ratio: of two callers that both ask for their
/// trace to be kept (which the default, parent-based sampler honours), it
/// exports the one whose id falls in the ratio and drops the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_named_in_the_environment_decides_which_traces_are_kept() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // The ratio sampler keeps a trace when the low 63 bits of its id,
    // shifted down, are below ratio × 2^63.
    const KEPT: &str = "5bf92f3577b34da60000000000000001";
    const DROPPED: &str = "5bf92f3577b34da6ffffffffffffffff";
    let _turn = SERIAL.lock().await;
    let collector = collector();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vehicle-allocation"))
        .env_clear()
        .args(["serve", "--grpc-addr", "127.0.0.1:0"])
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,vehicle_allocation::app=info")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.addr),
        )
        .env("OTEL_TRACES_SAMPLER", "traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.5")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails before it stops the service.
    let mut child = KillOnDrop(Some(child));
    let service = child.0.as_mut().unwrap();
    let mut lines = BufReader::new(service.stderr.take().unwrap()).lines();
    let http_addr = loop {
        let line = lines.next().expect("the service stopped").unwrap();
        if let Some(rest) = line.split("\"http_addr\":\"").nth(1) {
            break rest.split('"').next().unwrap().to_owned();
        }
    };
    // Drained, so that the service never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    vehicle_allocation::tls::install_default_provider();
    let client = reqwest::Client::new();
    for trace in [DROPPED, KEPT] {
        let response = client
            .get(format!("http://{http_addr}/api/drivers"))
            .header("traceparent", format!("00-{trace}-{CALLER_SPAN}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // A graceful stop exports every span still waiting.
    Command::new("kill")
        .args(["-TERM", &service.id().to_string()])
        .status()
        .unwrap();
    let mut service = child.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || service.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");

    let kept = collector.received_from(KEPT);
    assert!(
        kept.iter().any(|(_, s)| s.name == "http") && kept.iter().any(|(_, s)| s.name == "grpc"),
        "the kept trace arrived whole: {kept:?}"
    );
    // OTEL_SERVICE_NAME unset: the default name.
    assert!(
        kept.iter()
            .all(|(service, _)| service == "vehicle-allocation"),
        "{kept:?}"
    );
    let dropped = collector.received(DROPPED);
    assert!(
        dropped.is_empty(),
        "the dropped trace was exported: {dropped:?}"
    );
}

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
