//! `EventService`: the audit trail as a list, and as a live, resumable
//! stream.
//!
//! A watch reads the events itself, in sequence order, from the store: it
//! replays the stored ones a page at a time, then waits for the store's
//! signal that newer ones committed and reads those. So replay and live
//! delivery are one loop over one position, and nothing can fall between
//! them or come twice. The signal only says "read again"; it holds no
//! events, so a watcher costs no memory but its stream's outbox.
//!
//! What streams may cost is bounded: a caller and the server have at most
//! so many open (`MAX_WATCH_STREAMS_PER_CALLER`, `MAX_WATCH_STREAMS`); an
//! outbox holds at most `WATCH_BUFFER_BYTES`, and the watch reads on only
//! as the subscriber takes (a slow subscriber only falls behind, its events
//! still in the store); streams reading stored pages take turns
//! (`WATCH_REPLAYS`); and a subscriber that takes nothing for
//! `HTTP_IDLE_TIMEOUT` is ended with the resume token of what it took.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use tokio::sync::{Semaphore, watch};
use tonic::{Request, Response, Status};

use super::convert::{self, non_empty};
use super::outbox::{self, Refused};
use super::shares::{CallerSlots, NoSlot, Slot};
use super::{ServiceContext, context};
use crate::domain::access::event_scope;
use crate::domain::allocation::validate_id;
use crate::domain::error::{Violation, ViolationReason, Violations};
use crate::domain::page::ListKind;
use crate::domain::{
    DomainError, Event, EventFilter, EventKind, PageRequest, PageSize, PageToken, Snapshot,
};
use crate::proto::v1::{
    self, ListEventsRequest, ListEventsResponse, WatchEventsRequest, WatchEventsResponse,
    event_service_server::EventService, watch_events_response,
};
use crate::reasons;
use crate::storage::{Store, StoreError};

/// How long events are kept, and how event streams behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSettings {
    /// Events older than this are pruned.
    pub retention: chrono::Duration,
    /// How often pruning runs (and once at startup).
    pub prune_interval: Duration,
    /// How often an idle event stream sends a heartbeat.
    pub heartbeat: Duration,
    /// Bytes of messages an event stream holds ahead of its subscriber
    /// (`WATCH_BUFFER_BYTES`); past that, it reads on only as the
    /// subscriber takes them.
    pub watch_buffer_bytes: usize,
    /// Event streams open at once, in all and per caller
    /// (`MAX_WATCH_STREAMS`, `MAX_WATCH_STREAMS_PER_CALLER`).
    pub max_streams: usize,
    pub max_streams_per_caller: usize,
    /// Streams reading stored events at once (`WATCH_REPLAYS`): a stream
    /// catching up reads a page in its turn.
    pub replays: usize,
    /// A stream whose subscriber takes nothing for this long while
    /// messages wait is ended with its resume token (`HTTP_IDLE_TIMEOUT`).
    pub stall_timeout: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: chrono::Duration::days(730),
            prune_interval: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(15),
            watch_buffer_bytes: 32 * 1024,
            max_streams: 256,
            max_streams_per_caller: 16,
            replays: 4,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Events read from the store at a time while catching up.
const CATCH_UP_PAGE: usize = 256;

/// The `EventService` implementation.
pub struct EventApi {
    ctx: ServiceContext,
    /// Turns true when the server shuts down: streams end then.
    stopping: watch::Receiver<bool>,
    settings: EventSettings,
    /// Open streams, per caller.
    streams: Arc<CallerSlots>,
    /// Turns at reading stored pages.
    replays: Arc<Semaphore>,
    open_gauge: metrics::Gauge,
}

impl EventApi {
    pub fn new(
        ctx: ServiceContext,
        stopping: watch::Receiver<bool>,
        settings: EventSettings,
    ) -> Self {
        Self {
            ctx,
            stopping,
            streams: CallerSlots::new(settings.max_streams_per_caller, settings.max_streams),
            replays: Arc::new(Semaphore::new(settings.replays.max(1))),
            open_gauge: crate::metrics::event_streams_open(),
            settings,
        }
    }
}

/// RESOURCE_EXHAUSTED (TOO_MANY_STREAMS), with a time to come back.
fn too_many_streams(no_slot: NoSlot) -> Status {
    let message = match no_slot {
        NoSlot::Caller => {
            "this caller has as many event streams open as one caller may (MAX_WATCH_STREAMS_PER_CALLER); close one first"
        }
        NoSlot::Total => {
            "the server has as many event streams open as it takes (MAX_WATCH_STREAMS); retry after the delay in RetryInfo"
        }
    };
    super::status::with_retry(reasons::TOO_MANY_STREAMS, message, Duration::from_secs(5))
}

/// The filters of both calls, as received.
struct FilterFields {
    resource: String,
    employee_id: String,
    vehicle_id: String,
    actor: String,
    kind: String,
    start_time: Option<prost_types::Timestamp>,
    end_time: Option<prost_types::Timestamp>,
}

/// The filters, decoded and checked.
fn decode_filter(violations: &mut Violations, fields: FilterFields) -> EventFilter {
    let FilterFields {
        resource,
        employee_id,
        vehicle_id,
        actor,
        kind,
        start_time,
        end_time,
    } = fields;
    let mut id = |field: &str, value: String| {
        non_empty(value).and_then(|v| violations.check(validate_id(field, &v)).map(|()| v))
    };
    let filter = EventFilter {
        resource: id("resource", resource),
        employee_id: id("employee_id", employee_id),
        vehicle_id: id("vehicle_id", vehicle_id),
        actor: id("actor", actor),
        kinds: Vec::new(),
        start_time: None,
        end_time: None,
    };
    let kinds = decode_kinds(violations, &kind);
    EventFilter {
        kinds,
        start_time: start_time.and_then(|t| violations.check(instant("start_time", t))),
        end_time: end_time.and_then(|t| violations.check(instant("end_time", t))),
        ..filter
    }
}

/// The most kinds a filter lists: there are fewer kinds than this, and
/// each listed one costs the store a bound value.
pub const MAX_KINDS: usize = 32;

/// The comma-separated kinds, each once. More than [`MAX_KINDS`] entries
/// are refused unread; unknown ones are reported in one violation.
fn decode_kinds(violations: &mut Violations, kind: &str) -> Vec<EventKind> {
    let names: Vec<&str> = kind
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .take(MAX_KINDS + 1)
        .collect();
    if names.len() > MAX_KINDS {
        violations.push(Violation::new(
            "kind",
            ViolationReason::TooLong,
            format!("kind lists more than {MAX_KINDS} kinds; name each kind once"),
        ));
        return Vec::new();
    }
    let mut kinds = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        match EventKind::parse(name) {
            Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Some(_) => {}
            None => unknown.push(name),
        }
    }
    if let Some(first) = unknown.first() {
        let more = match unknown.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        violations.push(Violation::new(
            "kind",
            ViolationReason::InvalidValue,
            format!(
                "kind {:?}{more} is not an event kind; use one of {}",
                crate::domain::error::Echo(first),
                EventKind::ALL.map(EventKind::as_str).join(", ")
            ),
        ));
    }
    kinds
}

fn instant(field: &str, t: prost_types::Timestamp) -> Result<DateTime<Utc>, Violation> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| {
            Violation::new(
                field,
                ViolationReason::InvalidValue,
                format!("{field} is not a valid timestamp"),
            )
        })
}

/// A resume token: the sequence of the last event seen.
pub fn resume_token(sequence: u64) -> String {
    sequence.to_string()
}

fn parse_resume_token(token: &str) -> Result<u64, Violation> {
    // Sequences are stored as i64: a larger token names no event.
    token
        .parse::<i64>()
        .ok()
        .filter(|_| token.bytes().all(|b| b.is_ascii_digit()))
        .map(|sequence| sequence as u64)
        .ok_or_else(|| {
            Violation::new(
                "resume_token",
                ViolationReason::InvalidValue,
                format!(
                    "resume_token {:?} was not issued by this service; pass an event's or heartbeat's resume_token as it was sent",
                    crate::domain::error::Echo(token)
                ),
            )
        })
}

/// Refuses a position past the newest event: it was not issued here (or
/// the store was reset since), and a watch from it would wait for events
/// that never come. The newest sequence is read from the store, not taken
/// from the event signal: on MongoDB the signal follows a change stream
/// and may lag behind a token another replica just issued. A position that
/// was issued (at most the sequences taken) but is not readable here yet
/// (a MongoDB replica catching up) is worth a retry: UNAVAILABLE.
async fn check_not_beyond(store: &dyn Store, field: &str, after: u64) -> Result<(), Status> {
    if after == 0 {
        return Ok(());
    }
    let newest = store.latest_event_sequence().await?;
    if after <= newest {
        return Ok(());
    }
    if after <= store.sequences_taken().await? {
        return Err(Status::from(StoreError::unavailable(
            "resuming the event stream",
            std::io::Error::other(format!(
                "{field} {after} is not readable on this replica yet (it has {newest})"
            )),
        )));
    }
    Err(DomainError::invalid(Violation::new(
        field,
        ViolationReason::InvalidValue,
        format!(
            "{field} {after} is past the newest event ({newest}); pass an event's or heartbeat's resume_token as it was sent"
        ),
    ))
    .into())
}

fn snapshot(snapshot: Option<Snapshot>) -> Option<v1::Snapshot> {
    use v1::snapshot::Resource;
    snapshot.map(|s| v1::Snapshot {
        resource: Some(match s {
            Snapshot::Allocation(a) => Resource::Allocation(convert::allocation(a)),
            Snapshot::Employee(e) => Resource::Employee(convert::employee(e)),
            // Only auditors and fleet administrators see fleet events, and
            // they may read licence numbers.
            Snapshot::Driver(d) => Resource::Driver(convert::driver(d, true)),
            Snapshot::Vehicle(v) => Resource::Vehicle(convert::vehicle(v, true)),
            Snapshot::VehicleBlock(b) => Resource::VehicleBlock(convert::block(b)),
        }),
    })
}

/// An event as sent.
pub fn event_message(e: Event) -> v1::Event {
    let event = e.event;
    v1::Event {
        sequence: e.sequence as i64,
        event_time: Some(convert::timestamp(event.time)),
        actor: Some(v1::Actor {
            id: event.actor.id,
            roles: event.actor.roles,
        }),
        request_id: event.request_id,
        kind: event.kind.as_str().to_owned(),
        resource: event.resource,
        before: snapshot(event.before),
        after: snapshot(event.after),
        resume_token: resume_token(e.sequence),
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let caller = context(&request)?;
        let r = request.into_inner();
        let mut violations = Violations::new();
        let filter = decode_filter(
            &mut violations,
            FilterFields {
                resource: r.resource,
                employee_id: r.employee_id,
                vehicle_id: r.vehicle_id,
                actor: r.actor,
                kind: r.kind,
                start_time: r.start_time,
                end_time: r.end_time,
            },
        );
        let size = violations.check(PageSize::from_request("page_size", r.page_size));
        let (filter, size) = violations.finish(|| (filter, size))?;
        let filter = event_scope(&caller.principal, filter).map_err(DomainError::from)?;
        let size = size.map_or(0, PageSize::get);
        let key = self.ctx.page_key().await?;
        let tokens = PageToken::for_query(&key, ListKind::Events, &fingerprint_parts(&filter));
        let after = tokens.decode::<u64>("page_token", &r.page_token)?;
        let page = self
            .ctx
            .store
            .list_events(&filter, PageRequest { size, after })
            .await?;
        let next_page_token = match page.items.last() {
            Some(last) if page.has_more => tokens.encode(&last.sequence),
            _ => String::new(),
        };
        Ok(Response::new(ListEventsResponse {
            events: page.items.into_iter().map(event_message).collect(),
            next_page_token,
        }))
    }

    type WatchEventsStream = outbox::Receiver<Result<WatchEventsResponse, Status>>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = context(&request)?;
        let r = request.into_inner();
        let mut violations = Violations::new();
        let filter = decode_filter(
            &mut violations,
            FilterFields {
                resource: r.resource,
                employee_id: r.employee_id,
                vehicle_id: r.vehicle_id,
                actor: r.actor,
                kind: r.kind,
                start_time: r.start_time,
                end_time: r.end_time,
            },
        );
        let has_token = !r.resume_token.is_empty();
        if r.from_now && (has_token || r.after_sequence != 0) {
            violations.push(Violation::new(
                "from_now",
                ViolationReason::InvalidValue,
                "from_now starts the stream at the newest event; it cannot be combined with after_sequence or resume_token",
            ));
        }
        let after = match (r.after_sequence, non_empty(r.resume_token)) {
            (_, Some(token)) => violations.check(parse_resume_token(&token)),
            (n, None) if n < 0 => {
                violations.push(Violation::new(
                    "after_sequence",
                    ViolationReason::InvalidValue,
                    format!("after_sequence must not be negative, got {n}"),
                ));
                None
            }
            (n, None) => Some(n as u64),
        };
        let (filter, after) = violations.finish(|| (filter, after.unwrap_or(0)))?;
        let filter = event_scope(&caller.principal, filter).map_err(DomainError::from)?;
        let field = if has_token {
            "resume_token"
        } else {
            "after_sequence"
        };
        check_not_beyond(self.ctx.store.as_ref(), field, after).await?;
        // The newest event before the watch starts: what follows is "now on".
        let after = if r.from_now {
            self.ctx.store.latest_event_sequence().await?
        } else {
            after
        };
        let slot = self
            .streams
            .take(caller.caller_key())
            .map_err(too_many_streams)?;
        let (outbox, receiver) = outbox::outbox(self.settings.watch_buffer_bytes, after);
        let watch = Watch {
            store: self.ctx.store.clone(),
            filter,
            position: after,
            outbox,
            heartbeat: self.settings.heartbeat,
            stall: self.settings.stall_timeout,
            replays: Arc::clone(&self.replays),
        };
        let open = crate::metrics::Gauged::new(slot, &self.open_gauge);
        tokio::spawn(watch.run(self.stopping.clone(), open));
        Ok(Response::new(receiver))
    }
}

/// What page tokens of an event list are bound to.
fn fingerprint_parts(filter: &EventFilter) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let time = |t: Option<DateTime<Utc>>| t.map_or(String::new(), |t| t.to_rfc3339());
    vec![
        opt(&filter.resource),
        opt(&filter.employee_id),
        opt(&filter.vehicle_id),
        opt(&filter.actor),
        filter
            .kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(","),
        time(filter.start_time),
        time(filter.end_time),
    ]
}

/// One subscriber's stream.
struct Watch {
    store: Arc<dyn Store>,
    filter: EventFilter,
    /// The sequence after which events are still to be read: the last one
    /// queued, or a later one the filter did not pass.
    position: u64,
    outbox: outbox::Sender<Result<WatchEventsResponse, Status>>,
    heartbeat: Duration,
    stall: Duration,
    replays: Arc<Semaphore>,
}

/// Why a watch stops.
enum End {
    /// The subscriber went away.
    Gone,
    /// The subscriber took nothing for the stall timeout.
    Stalled,
    /// The store failed.
    Failed(Status),
    /// The server is shutting down.
    Stopping,
}

impl Watch {
    /// Runs the stream until it ends; `_open` is its slot, given back then.
    async fn run(
        mut self,
        mut stopping: watch::Receiver<bool>,
        _open: crate::metrics::Gauged<Slot>,
    ) {
        let mut signal = self.store.event_signal();
        let mut live = false;
        let mut ticks = tokio::time::interval(self.heartbeat);
        ticks.reset();
        let end = loop {
            // Marked seen before reading: a commit after this point
            // signals again, and one before it is in what is read.
            let committed = *signal.borrow_and_update();
            if let Err(end) = self.catch_up(live, &mut stopping).await {
                break end;
            }
            // Every event up to `committed` has been read: the next read
            // starts after it even when the filter passed none of them, so
            // a narrow watch does not scan the same events at every commit.
            self.position = self.position.max(committed);
            if !live {
                live = true;
                ticks.reset();
            }
            tokio::select! {
                changed = signal.changed() => {
                    if changed.is_err() {
                        break End::Failed(Status::unavailable("the store stopped"));
                    }
                }
                _ = ticks.tick() => {
                    if self.outbox.stalled(self.stall) {
                        break End::Stalled;
                    }
                    // No room is no harm: what waits tells the subscriber
                    // more than a heartbeat would.
                    let beat = self.heartbeat_message(*signal.borrow());
                    let bytes = beat.encoded_len();
                    if self.outbox.try_send(Ok(beat), bytes, self.position) == Err(Refused::Gone) {
                        break End::Gone;
                    }
                }
                _ = stopping.wait_for(|stop| *stop) => break End::Stopping,
                () = self.outbox.closed() => break End::Gone,
            }
        };
        match end {
            End::Gone => {}
            End::Stalled => {
                // What was never taken is dropped: the subscriber resumes
                // after what it took.
                let stall = self.stall;
                let ended = self.outbox.finish_stalled(stall, |taken| {
                    let token = resume_token(taken);
                    Err(super::status::with_reason_metadata(
                        reasons::WATCH_TOO_SLOW,
                        &format!(
                            "the subscriber took nothing for {} s; resume with resume_token {token}",
                            stall.as_secs()
                        ),
                        &[("resume_token", &token)],
                    ))
                });
                // It took something as it was being ended: an end as on
                // shutdown, after what is queued, with a heartbeat.
                if let Err(outbox) = ended {
                    self.outbox = outbox;
                    let beat = self.heartbeat_message(*signal.borrow());
                    self.outbox.finish(Ok(beat));
                }
            }
            End::Failed(status) => self.outbox.finish(Err(status)),
            End::Stopping => {
                // A last heartbeat with the resume token, then a clean end.
                let beat = self.heartbeat_message(*signal.borrow());
                self.outbox.finish(Ok(beat));
            }
        }
    }

    fn heartbeat_message(&self, latest: u64) -> WatchEventsResponse {
        WatchEventsResponse {
            message: Some(watch_events_response::Message::Heartbeat(v1::Heartbeat {
                latest_sequence: latest.max(self.position) as i64,
                resume_token: resume_token(self.position),
            })),
        }
    }

    /// Reads and queues every event after the position, as fast as the
    /// subscriber takes them. A page read live on a signal goes at once;
    /// any other read (a replay, a subscriber catching up) waits its turn.
    async fn catch_up(
        &mut self,
        live: bool,
        stopping: &mut watch::Receiver<bool>,
    ) -> Result<(), End> {
        let mut first = true;
        loop {
            let turn = if live && first {
                None
            } else {
                tokio::select! {
                    turn = Arc::clone(&self.replays).acquire_owned() => turn.ok(),
                    _ = stopping.wait_for(|stop| *stop) => return Err(End::Stopping),
                    () = self.outbox.closed() => return Err(End::Gone),
                }
            };
            first = false;
            let page = self
                .store
                .list_events(
                    &self.filter,
                    PageRequest {
                        size: CATCH_UP_PAGE,
                        after: Some(self.position),
                    },
                )
                .await
                .map_err(|error| End::Failed(error.into()))?;
            drop(turn);
            let mut full = None;
            for event in page.items {
                let sequence = event.sequence;
                let message = WatchEventsResponse {
                    message: Some(watch_events_response::Message::Event(event_message(event))),
                };
                let bytes = message.encoded_len();
                match self.outbox.try_send(Ok(message), bytes, sequence) {
                    Ok(()) => self.position = sequence,
                    Err(Refused::Gone) => return Err(End::Gone),
                    // The rest of the page is dropped, to be read again:
                    // a waiting stream holds nothing but its outbox.
                    Err(Refused::Full) => {
                        full = Some(bytes);
                        break;
                    }
                }
            }
            if let Some(needed) = full {
                tokio::select! {
                    room = self.outbox.room(needed, self.stall) => match room {
                        Ok(()) => continue,
                        Err(Refused::Full) => return Err(End::Stalled),
                        Err(Refused::Gone) => return Err(End::Gone),
                    },
                    _ = stopping.wait_for(|stop| *stop) => return Err(End::Stopping),
                }
            }
            if !page.has_more {
                return Ok(());
            }
        }
    }
}
