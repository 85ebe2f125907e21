//! What a hostile or careless caller meets: values echoed short, codec
//! errors blamed on the caller, and the server's limits.

use std::time::Duration;

use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vehicle_allocation::proto::v1::{
    self, CreateAllocationRequest, GetAllocationRequest, UpdateAllocationRequest,
};
use vehicle_allocation::server::{LOOPBACK_RESERVE, ServerLimits};

use crate::helpers::{AppOptions, assert_status, spawn_app, spawn_app_with};

#[tokio::test]
async fn values_echoed_in_errors_are_cut_to_64_characters() {
    let app = spawn_app().await;
    let date = "9".repeat(5000);
    let status = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: date.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_DATE");
    assert!(
        status
            .message()
            .contains(&format!("\"{}…\"", "9".repeat(64))),
        "{}",
        status.message()
    );
    assert!(status.message().len() < 300, "{}", status.message());

    let created = app.book(0, 0, 1).await.unwrap();
    let path = "p".repeat(5000);
    let status = app
        .allocations
        .clone()
        .update_allocation(UpdateAllocationRequest {
            allocation: Some(v1::Allocation {
                id: created.id.clone(),
                etag: "7".repeat(5000),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![path.clone()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 600, "{}", status.message());
    assert!(status.message().contains('…'), "{}", status.message());

    let response = app.get(&format!("/api/{}", "x".repeat(5000))).await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 200 && message.contains('…'), "{message}");
}

/// Sends `body` as the request message of `path`, as it is on the wire.
async fn raw_call(
    app: &crate::helpers::TestApp,
    path: &'static str,
    body: Vec<u8>,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary::<_, Vec<u8>, _>(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_the_callers_fault() {
    let app = spawn_app().await;
    // Field 1 (allocation) holding field 2 (employee_id) as bytes that are
    // not UTF-8.
    let inner = [0x12, 0x02, 0xff, 0xfe];
    let mut body = vec![0x0a, inner.len() as u8];
    body.extend(inner);
    let status = raw_call(
        &app,
        "/vehicle_allocation.v1.AllocationService/CreateAllocation",
        body,
    )
    .await;
    assert_status(&status, Code::InvalidArgument, "MALFORMED_REQUEST");

    // Not protobuf at all.
    let status = raw_call(
        &app,
        "/vehicle_allocation.v1.AllocationService/GetAllocation",
        vec![0xff; 7],
    )
    .await;
    assert_status(&status, Code::InvalidArgument, "MALFORMED_REQUEST");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let app = spawn_app().await;
    let request = CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            purpose: "x".repeat(5 << 20),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    assert!(request.encoded_len() > 4 << 20);
    let status = app
        .allocations
        .clone()
        .create_allocation(request)
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
}

/// Bytes in, bytes out: for requests the generated clients cannot send.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// An app with short timeouts and small caps, so the limits show quickly.
fn limited(change: impl FnOnce(&mut ServerLimits)) -> AppOptions {
    let mut limits = ServerLimits {
        header_timeout: Duration::from_millis(300),
        http_idle_timeout: Duration::from_millis(300),
        ..ServerLimits::default()
    };
    change(&mut limits);
    AppOptions {
        limits,
        ..AppOptions::default()
    }
}

/// Whether the server closes `stream` within `within`, reading (and
/// dropping) whatever it sends first.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A raw connection to `addr` that has been accepted and served: a REST
/// request answered, or (gRPC) the preface and SETTINGS sent.
async fn served_connection(addr: std::net::SocketAddr, grpc: bool) -> TcpStream {
    try_served_connection(addr, grpc)
        .await
        .expect("the server answers")
}

/// The same, or `None` when the server closes the connection instead.
async fn try_served_connection(addr: std::net::SocketAddr, grpc: bool) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    if grpc {
        tcp.write_all(H2_PREFACE).await.ok()?;
        tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.ok()?;
    } else {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .ok()?;
    }
    let mut buf = [0u8; 512];
    matches!(tcp.read(&mut buf).await, Ok(n) if n > 0).then_some(tcp)
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn each_listener_holds_at_most_max_connections() {
    let app = spawn_app_with(limited(|l| {
        l.max_connections = 3;
        l.header_timeout = Duration::from_secs(60);
        l.http_idle_timeout = Duration::from_secs(60);
    }))
    .await;
    let http_addr = app.http_addr();
    for (addr, grpc) in [(app.channel_addr(), true), (http_addr, false)] {
        // The test's own channel holds one gRPC slot; loopback peers (as
        // the test is) get a few slots more, for health checks.
        let taken = LOOPBACK_RESERVE + if grpc { 2 } else { 3 };
        let mut held = Vec::new();
        for _ in 0..taken {
            held.push(served_connection(addr, grpc).await);
        }
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(5)).await,
            "a connection over the cap is closed (grpc: {grpc})"
        );
        drop(held.pop());
        // The slot is freed once the server sees the close.
        let mut served = false;
        for _ in 0..100 {
            if try_served_connection(addr, grpc).await.is_some() {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "a freed slot takes a new connection (grpc: {grpc})");
    }
    // The test's own channel still works.
    app.book(0, 0, 1).await.unwrap();
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed() {
    let app = spawn_app_with(limited(|_| {})).await;
    let http_addr = app.http_addr();
    for addr in [app.channel_addr(), http_addr] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(5)).await,
            "a connection that sends nothing is closed ({addr})"
        );
        // Half a preface or half a request line is still silence.
        let mut partial = TcpStream::connect(addr).await.unwrap();
        partial.write_all(b"PRI * HTTP/2").await.unwrap();
        assert!(closed_within(&mut partial, Duration::from_secs(5)).await);
    }

    // Slowloris: a header line every 100 ms never finishes the headers.
    let mut slow = TcpStream::connect(http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 256];
        for i in 0.. {
            if slow
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                read = slow.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slowloris connection is closed");

    // An idle keep-alive connection is closed after HTTP_IDLE_TIMEOUT.
    let mut idle = served_connection(http_addr, false).await;
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_rest_connection_must_send_its_first_request_within_the_header_timeout() {
    // Idle connections may stay a minute, but a new one has 300 ms to send
    // a whole request, however it trickles its bytes.
    let app = spawn_app_with(limited(|l| l.http_idle_timeout = Duration::from_secs(60))).await;
    let http_addr = app.http_addr();
    let mut slow = TcpStream::connect(http_addr).await.unwrap();
    let started = std::time::Instant::now();
    // All but the last byte of the HTTP/2 preface, one every 100 ms: the
    // server cannot even tell HTTP/1 from HTTP/2 yet.
    let mut closed = false;
    let mut buf = [0u8; 64];
    for byte in &H2_PREFACE[..H2_PREFACE.len() - 1] {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::select! {
            read = slow.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { closed = true; break },
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    if !closed {
        assert!(closed_within(&mut slow, Duration::from_secs(10)).await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_rest_connection_idles_out_after_a_long_request() {
    let app = spawn_app_with(limited(|l| l.header_timeout = Duration::from_secs(60))).await;
    let created = app.book(0, 0, 1).await.unwrap();
    let http_addr = app.http_addr();
    let gate = app.faults.hold_reads();
    let mut tcp = TcpStream::connect(http_addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /api/allocations/{} HTTP/1.1\r\nhost: x\r\n\r\n",
            created.id
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    gate.entered.notified().await;
    // The request outlasts the 300 ms idle timeout...
    tokio::time::sleep(Duration::from_millis(700)).await;
    gate.release.notify_one();
    let mut buf = [0u8; 4096];
    assert!(tcp.read(&mut buf).await.unwrap() > 0, "answered");
    // ...and the idle connection is still closed after it.
    assert!(closed_within(&mut tcp, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_client_that_stops_reading_its_responses_is_disconnected() {
    let app = spawn_app_with(limited(|l| l.header_timeout = Duration::from_secs(60))).await;
    let http_addr = app.http_addr();
    let one = app.get("/openapi.json").await.bytes().await.unwrap().len();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(http_addr).await.unwrap();
    // A hundred pipelined requests whose answers fill every buffer on the
    // way, and a client that reads none of them for a while.
    let requests = "GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(100);
    tcp.write_all(requests.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = 0;
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection was closed");
    assert!(
        received < 100 * one,
        "{received} bytes of {} were sent before the stall closed the connection",
        100 * one
    );
}

#[tokio::test]
async fn grpc_connections_that_do_not_answer_pings_are_closed() {
    let app = spawn_app_with(limited(|l| {
        l.keepalive_interval = Duration::from_millis(200);
        l.keepalive_timeout = Duration::from_millis(200);
    }))
    .await;
    // The preface and SETTINGS, then nothing: no SETTINGS ack, no PING ack.
    let mut mute = served_connection(app.channel_addr(), true).await;
    assert!(closed_within(&mut mute, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once() {
    let mut app = spawn_app_with(limited(|l| {
        l.header_timeout = Duration::from_secs(60);
        l.http_idle_timeout = Duration::from_secs(60);
    }))
    .await;
    let http_addr = app.http_addr();
    let mut held = Vec::new();
    for addr in [app.channel_addr(), http_addr] {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    held.push(served_connection(http_addr, false).await);
    let mut slow = TcpStream::connect(http_addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    held.push(slow);
    let mut body = TcpStream::connect(http_addr).await.unwrap();
    body.write_all(
        b"POST /api/allocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"emp",
    )
    .await
    .unwrap();
    held.push(body);
    // Let the server take them all in.
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.begin_shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(5), app.server()).await;
    assert!(
        stopped.is_ok(),
        "shutdown waits for no connection without a request in flight (SHUTDOWN_TIMEOUT is 20 s)"
    );
    for mut tcp in held {
        assert!(closed_within(&mut tcp, Duration::from_secs(1)).await);
    }
}

#[tokio::test]
async fn oversized_requests_get_the_json_error_shape() {
    let app = spawn_app().await;
    let response = app
        .get(&format!(
            "/api/allocations?employee_id={}",
            "e".repeat(9000)
        ))
        .await;
    assert_eq!(response.status(), 414);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "URI_TOO_LONG", "{body}");

    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-big", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "HEADERS_TOO_LARGE", "{body}");

    // 413 says it closes the connection, and a pooled client's next request
    // goes through on a new one.
    let response = app
        .http
        .post(app.url("/api/allocations"))
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["connection"], "close");
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "BODY_TOO_LARGE", "{body}");
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_and_health_still_answers() {
    let app = spawn_app_with(limited(|l| l.max_in_flight = 1)).await;
    let created = app.book(0, 0, 1).await.unwrap();
    let gate = app.faults.hold_reads();
    let held = {
        let mut client = app.allocations.clone();
        let id = created.id.clone();
        tokio::spawn(async move { client.get_allocation(GetAllocationRequest { id }).await })
    };
    gate.entered.notified().await;

    let status = app
        .allocations
        .clone()
        .get_allocation(GetAllocationRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap_err();
    let details = assert_status(&status, Code::ResourceExhausted, "OVERLOADED");
    assert!(details.retry_info().is_some());
    let response = app.get(&format!("/api/allocations/{}", created.id)).await;
    assert_eq!(response.status(), 503);
    let mut health = HealthClient::new(app.channel.clone());
    let answer = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, ServingStatus::Serving as i32);

    gate.release.notify_one();
    held.await.unwrap().unwrap();
    app.book(1, 1, 1).await.unwrap();
}

#[tokio::test]
async fn a_caller_beyond_its_share_is_shed_and_other_callers_are_served() {
    let app = spawn_app_with(limited(|l| {
        l.max_in_flight = 4;
        l.max_in_flight_per_caller = Some(2);
    }))
    .await;
    let created = app.book(0, 0, 1).await.unwrap();
    let gate = app.faults.hold_reads();
    // Another peer, without authentication: counted by its address.
    let flood = app.channel_from([127, 0, 0, 2].into()).await;
    let (done, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..4 {
        let mut client = v1::allocation_service_client::AllocationServiceClient::new(flood.clone());
        let (id, done) = (created.id.clone(), done.clone());
        tokio::spawn(async move {
            let _ = done.send(client.get_allocation(GetAllocationRequest { id }).await);
        });
    }
    // Two are held in the store; the two beyond the caller's share are
    // answered at once.
    for _ in 0..2 {
        let answer = tokio::time::timeout(Duration::from_secs(10), answers.recv())
            .await
            .expect("calls beyond the caller's share are refused, not held")
            .unwrap();
        let status = answer.unwrap_err();
        let details = assert_status(&status, Code::ResourceExhausted, "OVERLOADED");
        assert!(details.retry_info().is_some());
        assert!(
            status.message().contains("MAX_IN_FLIGHT_PER_CALLER"),
            "{status:?}"
        );
    }
    // The server still has room for everyone else, over gRPC and REST.
    app.book(1, 1, 1).await.expect("another caller is served");
    let response = app.get("/api/vehicles?page_size=1").await;
    assert_eq!(response.status(), 200);

    gate.release.notify_waiters();
    for _ in 0..2 {
        answers
            .recv()
            .await
            .unwrap()
            .expect("the held calls finish");
    }
}

#[tokio::test]
async fn a_call_runs_at_most_its_deadline() {
    let app = spawn_app_with(limited(|l| l.default_deadline = Duration::from_millis(300))).await;
    let created = app.book(0, 0, 1).await.unwrap();
    let _gate = app.faults.hold_reads();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        app.allocations
            .clone()
            .get_allocation(GetAllocationRequest {
                id: created.id.clone(),
            }),
    )
    .await
    .expect("answered by the server's deadline, not the test's")
    .unwrap_err();
    assert_status(&status, Code::DeadlineExceeded, "TIMEOUT");
    assert!(status.message().contains("300 ms"), "{}", status.message());

    // A shorter deadline of the caller's is the one kept.
    let mut request = tonic::Request::new(GetAllocationRequest { id: created.id });
    request.set_timeout(Duration::from_millis(100));
    let status = app
        .allocations
        .clone()
        .get_allocation(request)
        .await
        .unwrap_err();
    // tonic's client keeps the same deadline itself and may answer first,
    // with CANCELLED; either way the call ends at the caller's deadline.
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(!status.message().contains("300 ms"), "{}", status.message());
}

#[tokio::test]
async fn grpc_advertises_max_concurrent_streams() {
    let app = spawn_app_with(limited(|l| l.max_concurrent_streams = 4)).await;
    let mut tcp = TcpStream::connect(app.channel_addr()).await.unwrap();
    tcp.write_all(H2_PREFACE).await.unwrap();
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    // The server's first frame is its SETTINGS: 6-byte (id, value) pairs.
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(3, 4)), "{settings:?}");
}
