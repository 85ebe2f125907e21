//! The connection layer both listeners share: how many connections each
//! takes, how long a connection may stay silent, and what happens to idle
//! connections on shutdown. gRPC connections then go to tonic's server; REST
//! connections are served here, with hyper.
//!
//! Every accepted connection holds one of its listener's
//! `MAX_CONNECTIONS` slots until it closes; beyond that, new connections are
//! closed as soon as they are accepted, so descriptors cannot run out. A
//! connection must complete its TLS handshake and send its first request
//! (for gRPC, the HTTP/2 preface) within `HEADER_READ_TIMEOUT`, and a REST
//! connection with no request in flight is closed after `HTTP_IDLE_TIMEOUT`.
//! On shutdown, connections with no request in flight close at once; only
//! requests in flight get the grace period.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsConfigs;

/// The limits the servers apply, each set by a documented variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections per listener (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Requests being handled at once, over both listeners; more are shed
    /// with RESOURCE_EXHAUSTED (`MAX_IN_FLIGHT_REQUESTS`).
    pub max_in_flight: usize,
    /// Requests one caller may have in flight (`MAX_IN_FLIGHT_PER_CALLER`);
    /// `None`: a quarter of `max_in_flight`.
    pub max_in_flight_per_caller: Option<usize>,
    /// Failed authentications a peer may have (`AUTH_FAILURES_PER_SECOND`).
    pub auth_failures: crate::auth::failures::FailureLimit,
    /// HTTP/2 streams per gRPC connection (`GRPC_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// The deadline of a gRPC call whose caller sets none, and the longest
    /// any call may run (`GRPC_DEFAULT_TIMEOUT`).
    pub default_deadline: Duration,
    /// How often an idle gRPC connection is pinged, and how long the answer
    /// may take before the connection is closed as dead
    /// (`GRPC_KEEPALIVE_INTERVAL`, `GRPC_KEEPALIVE_TIMEOUT`).
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// Time for the TLS handshake and the first request's headers (or the
    /// HTTP/2 preface), and for any REST request's headers
    /// (`HEADER_READ_TIMEOUT`).
    pub header_timeout: Duration,
    /// A REST connection with no request in flight is closed after this
    /// long (`HTTP_IDLE_TIMEOUT`).
    pub http_idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1000,
            max_in_flight: 1000,
            max_in_flight_per_caller: None,
            auth_failures: crate::auth::failures::FailureLimit::default(),
            max_concurrent_streams: 128,
            default_deadline: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            header_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerLimits {
    /// Requests one caller may have in flight.
    pub fn max_in_flight_per_caller(&self) -> usize {
        self.max_in_flight_per_caller
            .unwrap_or(self.max_in_flight / 4)
            .clamp(1, self.max_in_flight.max(1))
    }
}

/// The longest request target (path and query) REST takes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes, and headers, a REST request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 100;
/// The largest REST request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Connections beyond `MAX_CONNECTIONS` that loopback peers may open.
pub const LOOPBACK_RESERVE: usize = 8;

/// How long a REST response the client does not read may hold shutdown
/// up: an event stream's last heartbeat, say, to a reader that stalled.
pub const STOP_WRITE_GRACE: Duration = Duration::from_secs(2);

/// The HTTP/2 client preface every gRPC connection starts with.
const PREFACE_BYTES: u64 = 24;

/// A future that completes once shutdown has begun.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// One listener's connections: the socket and its slots.
pub struct Connections {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    /// Extra slots for loopback peers only: a health check run on the
    /// host (the container's HEALTHCHECK, an exec probe) still gets in
    /// when a flood holds every other slot.
    loopback: Arc<Semaphore>,
    what: &'static str,
    refused: AtomicU64,
}

impl Connections {
    pub fn new(listener: TcpListener, max_connections: usize, what: &'static str) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections)),
            loopback: Arc::new(Semaphore::new(LOOPBACK_RESERVE)),
            what,
            refused: AtomicU64::new(0),
        }
    }

    /// The next connection, with Nagle off, and its slot. When every slot
    /// is taken, connections are closed as they come. A failed accept (out
    /// of descriptors, say) is logged and retried after a pause, not a spin.
    async fn next(&self) -> (TcpStream, OwnedSemaphorePermit) {
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    match Arc::clone(&self.slots)
                        .try_acquire_owned()
                        .or_else(|error| {
                            if peer.ip().to_canonical().is_loopback() {
                                Arc::clone(&self.loopback).try_acquire_owned()
                            } else {
                                Err(error)
                            }
                        }) {
                        Ok(slot) => {
                            let _ = tcp.set_nodelay(true);
                            return (tcp, slot);
                        }
                        Err(_) => {
                            // One line per 1,000, not one per connection.
                            if self
                                .refused
                                .fetch_add(1, Ordering::Relaxed)
                                .is_multiple_of(1000)
                            {
                                tracing::warn!(
                                    listener = self.what,
                                    "every connection slot is taken (MAX_CONNECTIONS); closing new connections"
                                );
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, listener = self.what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// `tcp` after a TLS handshake completed within `timeout`; `None`, logged,
/// when it failed or took too long.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
    what: &str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%error, listener = what, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(listener = what, "TLS handshake timed out");
            None
        }
    }
}

/// What a connection is doing, as its [`Guarded`] stream and (for REST)
/// its service see it.
#[derive(Debug)]
pub struct ConnectionState {
    opened: Instant,
    /// Bytes read so far.
    read: AtomicU64,
    /// REST requests seen, and those being handled (gRPC leaves both 0).
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// Of those, responses streamed as they are made (SSE).
    streaming: AtomicUsize,
    /// Milliseconds after `opened` that the last request started or ended:
    /// idleness counts from there, not from bytes (an HTTP/2 ping answer
    /// is not a request).
    last_active_ms: AtomicU64,
    /// The reader of a busy REST connection, woken when its last request
    /// ends, to arm the idle timer (an HTTP/2 connection may not read again
    /// by itself).
    reader: atomic_waker::AtomicWaker,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            read: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            reader: atomic_waker::AtomicWaker::new(),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn last_active(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }
}

/// When a silent connection is closed.
#[derive(Debug, Clone, Copy)]
enum Silence {
    /// gRPC: until the HTTP/2 preface has arrived, `within` of opening.
    Preface { within: Duration },
    /// REST: until the first request, `first_within` of opening; then
    /// whenever no request is in flight, `after` of the last one; and a
    /// response the client does not read for `after`.
    Idle {
        first_within: Duration,
        after: Duration,
    },
}

/// A connection's stream, holding the connection's slot, that fails its
/// reads (so that the server drops the connection) when the connection has
/// been silent for too long, or when shutdown begins and it has nothing in
/// flight.
pub struct Guarded<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
    state: Arc<ConnectionState>,
    silence: Silence,
    timer: Pin<Box<Sleep>>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    stopping: bool,
    /// When a write waiting for the client saw shutdown begin.
    stopped_at: Option<Instant>,
    /// Whether a write is waiting for the client to read, and when a write
    /// last made progress.
    writing: bool,
    last_write: Instant,
}

impl<IO> Guarded<IO> {
    fn new(
        io: IO,
        slot: OwnedSemaphorePermit,
        state: Arc<ConnectionState>,
        silence: Silence,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            io,
            _slot: slot,
            state,
            silence,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            stop: Box::pin(stopped(stopping)),
            stopping: false,
            stopped_at: None,
            writing: false,
            last_write: Instant::now(),
        }
    }

    /// When the connection is to be closed if it stays idle as it is (and
    /// on shutdown, at once); `None` while it is busy.
    fn close_at(&self) -> Option<Instant> {
        match self.silence {
            Silence::Preface { within } => (self.state.read.load(Ordering::Relaxed)
                < PREFACE_BYTES)
                .then(|| self.state.opened + within),
            Silence::Idle { .. } if self.writing => None,
            Silence::Idle {
                first_within,
                after,
            } => {
                if self.state.in_flight.load(Ordering::Relaxed) > 0 {
                    None
                } else if self.state.requests.load(Ordering::Relaxed) == 0 {
                    Some(self.state.opened + first_within)
                } else {
                    Some(self.state.last_active() + after)
                }
            }
        }
    }

    /// A response the client has not read for the idle timeout, or, once
    /// shutdown has begun, for [`STOP_WRITE_GRACE`].
    fn write_stalled_at(&self) -> Option<Instant> {
        match self.silence {
            Silence::Idle { after, .. } if self.writing => {
                let idle = self.last_write + after;
                Some(match self.stopped_at {
                    Some(at) => idle.min(at + STOP_WRITE_GRACE),
                    None => idle,
                })
            }
            _ => None,
        }
    }

    /// Notes how a write went; a response the client has not read for
    /// the idle timeout fails the write (the reader may never be polled
    /// again meanwhile).
    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        progress: bool,
    ) -> Poll<io::Result<T>> {
        // Only REST connections watch their writes (`write_stalled_at`);
        // gRPC ones need not read the clock on every write.
        if !matches!(self.silence, Silence::Idle { .. }) {
            return poll;
        }
        match &poll {
            Poll::Pending => {
                if !self.writing {
                    self.writing = true;
                    self.last_write = Instant::now();
                }
                // Woken when shutdown begins, to cut the wait short.
                if !self.stopping && self.stop.as_mut().poll(cx).is_ready() {
                    self.stopping = true;
                    self.stopped_at = Some(Instant::now());
                }
                if let Some(at) = self.write_stalled_at()
                    && let Poll::Ready(Err(error)) = self.poll_timer(cx, at)
                {
                    return Poll::Ready(Err(error));
                }
            }
            Poll::Ready(Ok(_)) if progress => self.last_write = Instant::now(),
            _ => {}
        }
        poll
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        if let Poll::Ready(result) = Pin::new(&mut this.io).poll_read(cx, buf) {
            let read = buf.filled().len() - before;
            this.state.read.fetch_add(read as u64, Ordering::Relaxed);
            return Poll::Ready(result);
        }
        // Busy (or a gRPC connection past its preface): nothing to watch,
        // and nothing more to do on this hot path.
        let Some(close_at) = this.close_at() else {
            if let Some(at) = this.write_stalled_at() {
                return this.poll_timer(cx, at);
            }
            if matches!(this.silence, Silence::Idle { .. }) {
                this.state.reader.register(cx.waker());
                if this.state.in_flight.load(Ordering::Acquire) == 0 {
                    // The request ended meanwhile.
                    cx.waker().wake_by_ref();
                }
            }
            return Poll::Pending;
        };
        if !this.stopping && this.stop.as_mut().poll(cx).is_ready() {
            this.stopping = true;
            this.stopped_at = Some(Instant::now());
        }
        if this.stopping {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "shutting down: closing a connection with nothing in flight",
            )));
        }
        this.poll_timer(cx, close_at)
    }
}

impl<IO> Guarded<IO> {
    /// Fails the read once `close_at` has passed; until then, wakes the
    /// reader then.
    fn poll_timer(&mut self, cx: &mut Context<'_>, close_at: Instant) -> Poll<io::Result<()>> {
        // The deadline mostly moves later (each request pushes it): the
        // timer is left to fire at the old one and only then moved, rather
        // than moved on every request.
        if close_at < self.timer.deadline() {
            self.timer.as_mut().reset(close_at);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= close_at {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was silent for too long",
                )));
            }
            self.timer.as_mut().reset(close_at);
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        let progress = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.after_write(cx, poll, progress)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            if self.writing {
                self.writing = false;
                self.last_write = Instant::now();
            }
            return poll;
        }
        self.after_write(cx, poll, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        let progress = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        self.after_write(cx, poll, progress)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The gRPC connections on `connections` for tonic, TLS or plain: each
/// accepted within its slot and, with TLS, handshaken in its own task so
/// that a slow client holds up no one.
pub fn grpc_incoming<IO: Send + 'static>(
    connections: Connections,
    limits: ServerLimits,
    stopping: watch::Receiver<bool>,
    upgrade: impl Fn(TcpStream) -> Pin<Box<dyn Future<Output = Option<IO>> + Send>>
    + Send
    + Sync
    + 'static,
) -> tokio_stream::wrappers::ReceiverStream<Result<Guarded<IO>, io::Error>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let silence = Silence::Preface {
        within: limits.header_timeout,
    };
    let upgrade = Arc::new(upgrade);
    // Ends when tonic drops the stream, on shutdown: ending it first would
    // end tonic's server before its shutdown signal has run.
    tokio::spawn(async move {
        loop {
            let (tcp, slot) = tokio::select! {
                () = sender.closed() => return,
                next = connections.next() => next,
            };
            let (sender, upgrade, stopping) =
                (sender.clone(), Arc::clone(&upgrade), stopping.clone());
            tokio::spawn(async move {
                if let Some(io) = upgrade(tcp).await {
                    let state = Arc::new(ConnectionState::new());
                    let guarded = Guarded::new(io, slot, state, silence, stopping);
                    let _ = sender.send(Ok(guarded)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// The TLS upgrade of a gRPC connection, for [`grpc_incoming`].
pub fn tls_upgrade(
    configs: Arc<TlsConfigs>,
    timeout: Duration,
) -> impl Fn(
    TcpStream,
) -> Pin<Box<dyn Future<Output = Option<tokio_rustls::server::TlsStream<TcpStream>>> + Send>>
+ Send
+ Sync
+ 'static {
    move |tcp| {
        let acceptor = configs.grpc_acceptor();
        Box::pin(handshake(acceptor, tcp, timeout, "gRPC"))
    }
}

/// Serves `router` on `connections`, over TLS when `tls` is given, until
/// shutdown begins; then closes idle connections and waits for the
/// requests in flight. A verified client certificate reaches the handlers
/// as a [`crate::auth::PeerCertificate`].
pub async fn serve_http(
    connections: Connections,
    tls: Option<Arc<TlsConfigs>>,
    router: axum::Router,
    limits: ServerLimits,
    stopping: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(MAX_HEADERS * 2);
    builder
        .http2()
        .timer(TokioTimer::new())
        // What a stream holds for a peer that stops reading (hyper's
        // default is 400 KiB a stream).
        .max_send_buf_size(64 * 1024)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    let graceful = GracefulShutdown::new();
    let silence = Silence::Idle {
        first_within: limits.header_timeout,
        after: limits.http_idle_timeout,
    };
    let stop = stopped(stopping.clone());
    tokio::pin!(stop);
    loop {
        let (tcp, slot) = tokio::select! {
            () = &mut stop => break,
            next = connections.next() => next,
        };
        let (builder, router, watcher) = (builder.clone(), router.clone(), graceful.watcher());
        let (tls, stopping) = (tls.clone(), stopping.clone());
        // Who the gRPC edge counts an anonymous REST caller's share and
        // failed credentials against.
        let client = tcp
            .peer_addr()
            .ok()
            .map(|peer| crate::auth::ClientAddr(peer.ip().to_canonical()));
        tokio::spawn(async move {
            let state = Arc::new(ConnectionState::new());
            let timeout = limits.header_timeout;
            match tls {
                Some(configs) => {
                    let Some(stream) =
                        handshake(configs.http_acceptor(), tcp, timeout, "HTTP").await
                    else {
                        return;
                    };
                    let certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first().cloned())
                        .map(crate::auth::PeerCertificate);
                    let service = tower::ServiceExt::map_request(
                        router,
                        move |mut request: Request<axum::body::Body>| {
                            if let Some(certificate) = &certificate {
                                request.extensions_mut().insert(certificate.clone());
                            }
                            if let Some(client) = client {
                                request.extensions_mut().insert(client);
                            }
                            request
                        },
                    );
                    let service = Tracked::new(service, &state, timeout);
                    let service = TowerToHyperService::new(service);
                    let cut = cut_stalled_streams(Arc::clone(&state), stopping.clone());
                    let io = Guarded::new(stream, slot, state, silence, stopping);
                    let connection = builder.serve_connection(TokioIo::new(io), service);
                    tokio::select! {
                        _ = watcher.watch(connection.into_owned()) => {}
                        () = cut => {}
                    }
                }
                None => {
                    let service = tower::ServiceExt::map_request(
                        router,
                        move |mut request: Request<axum::body::Body>| {
                            if let Some(client) = client {
                                request.extensions_mut().insert(client);
                            }
                            request
                        },
                    );
                    let service = TowerToHyperService::new(Tracked::new(service, &state, timeout));
                    let cut = cut_stalled_streams(Arc::clone(&state), stopping.clone());
                    let io = Guarded::new(tcp, slot, state, silence, stopping);
                    let connection = builder.serve_connection(TokioIo::new(io), service);
                    tokio::select! {
                        _ = watcher.watch(connection.into_owned()) => {}
                        () = cut => {}
                    }
                }
            }
        });
    }
    drop(connections);
    graceful.shutdown().await;
}

/// Completes, so that the connection is dropped, once shutdown began
/// [`STOP_WRITE_GRACE`] ago and only streamed responses are left: an event
/// stream ends with a last heartbeat on shutdown, and a reader that has not
/// taken it by then stopped reading. This covers HTTP/2, whose stalled
/// streams do not stall the socket as HTTP/1.1's do.
async fn cut_stalled_streams(state: Arc<ConnectionState>, stopping: watch::Receiver<bool>) {
    stopped(stopping).await;
    tokio::time::sleep(STOP_WRITE_GRACE).await;
    loop {
        let in_flight = state.in_flight.load(Ordering::Acquire);
        if in_flight > 0 && in_flight == state.streaming.load(Ordering::Acquire) {
            tracing::debug!(
                streams = in_flight,
                "closing a connection whose streams are not read"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A REST connection's service: checks the request's size, reads its body
/// (within the limit and the header timeout), and only then counts it as in
/// flight, so that a client that never finishes its body holds nothing up.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnectionState>,
    body_timeout: Duration,
}

impl<S> Tracked<S> {
    fn new(inner: S, state: &Arc<ConnectionState>, body_timeout: Duration) -> Self {
        Self {
            inner,
            state: Arc::clone(state),
            body_timeout,
        }
    }
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<ConnectionState>);

impl InFlight {
    fn new(state: &Arc<ConnectionState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.touch();
        Self(Arc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

/// Counts a streamed response while it lives.
struct Streaming(Arc<ConnectionState>);

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct Finishing {
    body: axum::body::Body,
    in_flight: InFlight,
    _streaming: Option<Streaming>,
}

/// `response` with its body keeping the request in flight, and counted as
/// streamed when it is an event stream.
fn finishing(
    response: Response<axum::body::Body>,
    in_flight: InFlight,
) -> Response<axum::body::Body> {
    let streamed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let streaming = streamed.then(|| {
        in_flight.0.streaming.fetch_add(1, Ordering::AcqRel);
        Streaming(Arc::clone(&in_flight.0))
    });
    response.map(|body| {
        axum::body::Body::new(Finishing {
            body,
            in_flight,
            _streaming: streaming,
        })
    })
}

impl http_body::Body for Finishing {
    type Data = prost::bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let _ = &self.in_flight;
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<S> tower::Service<Request<hyper::body::Incoming>> for Tracked<S>
where
    S: tower::Service<
            Request<axum::body::Body>,
            Response = Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<axum::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<hyper::body::Incoming>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = Arc::clone(&self.state);
        let timeout = self.body_timeout;
        state.requests.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            // Small bodies are read whole here, so a handler never waits on
            // the client.
            let (mut parts, body) = request.into_parts();
            let refused = match too_large(&parts) {
                Some(refused) => Some(refused),
                // Nothing to read (a GET, say): no buffering.
                None if http_body::Body::is_end_stream(&body) => {
                    let in_flight = InFlight::new(&state);
                    let body = axum::body::Body::empty();
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    return Ok(finishing(response, in_flight));
                }
                None => {
                    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
                    match tokio::time::timeout(timeout, http_body_util::BodyExt::collect(limited))
                        .await
                    {
                        Ok(Ok(collected)) => {
                            let in_flight = InFlight::new(&state);
                            let body = axum::body::Body::from(collected.to_bytes());
                            let response = inner.call(Request::from_parts(parts, body)).await?;
                            // In flight until hyper has the whole body, so
                            // that shutdown does not cut the response off.
                            return Ok(finishing(response, in_flight));
                        }
                        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                            Some(Refused::BodyTooLarge)
                        }
                        Ok(Err(_)) | Err(_) => Some(Refused::UnreadableBody),
                    }
                }
            };
            // Refused before its body was read: the router answers (with the
            // request id and CORS headers), then the connection is closed,
            // or the rest of the body would be taken for the next request.
            parts.extensions.insert(refused.expect("set above"));
            let in_flight = InFlight::new(&state);
            let response = inner
                .call(Request::from_parts(parts, axum::body::Body::empty()))
                .await?;
            // In flight until hyper has the whole body, as above.
            Ok(finishing(closing(response), in_flight))
        })
    }
}

/// A request the connection layer refused before the router saw it; the
/// gateway answers it in its error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    UriTooLong,
    HeadersTooLarge,
    BodyTooLarge,
    UnreadableBody,
}

/// A response after which the connection is closed: its request was
/// refused before its body was read, so the body must not be taken for the
/// next request.
fn closing(mut response: Response<axum::body::Body>) -> Response<axum::body::Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request line or headers over the limits (answered 414 or 431 in the
/// JSON error shape; hyper's own, larger limits answer with no body).
fn too_large(request: &http::request::Parts) -> Option<Refused> {
    let uri = request
        .uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(Refused::UriTooLong);
    }
    let header_bytes: usize = request
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if request.headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Some(Refused::HeadersTooLarge);
    }
    None
}
