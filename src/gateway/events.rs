//! `/api/events`: the audit trail as a list, and as Server-Sent Events.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use tokio_stream::{Stream, StreamExt as _};
use utoipa::{IntoParams, ToSchema};

use super::Upstream;
use super::admin_json::VehicleBlockJson;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::json::{AllocationJson, DriverJson, EmployeeJson, VehicleJson, rfc3339};
use super::middleware::RequestId;
use crate::proto::v1::{self, watch_events_response};
use crate::reasons;

/// Who made a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorJson {
    /// An employee id, an API key's or certificate's name, `anonymous`, or
    /// `system:seed` / `system:import`.
    pub id: String,
    pub roles: Vec<String>,
}

/// A resource before or after a change: one of its fields is set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotJson {
    Allocation(AllocationJson),
    Employee(EmployeeJson),
    Driver(DriverJson),
    Vehicle(VehicleJson),
    VehicleBlock(VehicleBlockJson),
}

/// One change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "sequence": 42,
    "event_time": "2099-01-01T09:30:00.123Z",
    "actor": {"id": "emp-00042", "roles": ["employee"]},
    "request_id": "0193a1b2-0000-7000-8000-000000000001",
    "kind": "allocation.created",
    "resource": "allocations/01a21a50-a9c3-7207-becc-cc45f2634d1f",
    "before": null,
    "after": {"allocation": {"id": "01a21a50-a9c3-7207-becc-cc45f2634d1f",
        "employee_id": "emp-00042", "vehicle_id": "veh-0007", "driver_id": "drv-0007",
        "allocation_date": "2099-01-08", "purpose": "Client visit",
        "create_time": "2099-01-01T09:30:00.123Z", "update_time": "2099-01-01T09:30:00.123Z",
        "etag": "1"}},
    "resume_token": "42"
}))]
pub struct EventJson {
    /// Strictly increasing; the stream's order and its SSE `id`.
    pub sequence: i64,
    #[schema(format = DateTime)]
    pub event_time: String,
    pub actor: Option<ActorJson>,
    /// The `x-request-id` of the call that made the change.
    pub request_id: String,
    /// `allocation.created`, `allocation.updated`, `allocation.cancelled`,
    /// `employee.created`, `employee.updated`, `employee.erased`, `driver.created`,
    /// `driver.updated`, `vehicle.created`, `vehicle.updated`,
    /// `vehicle_block.created`, `vehicle_block.deleted`.
    pub kind: String,
    /// `allocations/{id}`, `vehicles/{id}`, ...
    pub resource: String,
    /// Empty (null) on create.
    pub before: Option<SnapshotJson>,
    /// Empty (null) on cancel and delete.
    pub after: Option<SnapshotJson>,
    /// Resumes the stream after this event (`Last-Event-ID` or
    /// `resume_token`).
    pub resume_token: String,
}

fn snapshot(s: Option<v1::Snapshot>) -> Option<SnapshotJson> {
    use v1::snapshot::Resource;
    Some(match s?.resource? {
        Resource::Allocation(a) => SnapshotJson::Allocation(a.into()),
        Resource::Employee(e) => SnapshotJson::Employee(e.into()),
        Resource::Driver(d) => SnapshotJson::Driver(d.into()),
        Resource::Vehicle(v) => SnapshotJson::Vehicle(v.into()),
        Resource::VehicleBlock(b) => SnapshotJson::VehicleBlock(b.into()),
    })
}

impl From<v1::Event> for EventJson {
    fn from(e: v1::Event) -> Self {
        Self {
            sequence: e.sequence,
            event_time: rfc3339(e.event_time),
            actor: e.actor.map(|a| ActorJson {
                id: a.id,
                roles: a.roles,
            }),
            request_id: e.request_id,
            kind: e.kind,
            resource: e.resource,
            before: snapshot(e.before),
            after: snapshot(e.after),
            resume_token: e.resume_token,
        }
    }
}

/// One Server-Sent Event as it comes over the wire, parsed into its
/// fields.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"event": "message", "id": "42",
    "data": "{\"sequence\":42,\"kind\":\"allocation.created\",\"...\":\"...\"}"}))]
pub struct SseEventJson {
    /// `message` (no `event:` line) for an event, `heartbeat` or `error`.
    pub event: String,
    /// The event's sequence (for a heartbeat, its `resume_token`): what
    /// `Last-Event-ID` resumes after.
    pub id: Option<String>,
    /// One line of JSON: an EventJson for `message`, `{"latest_sequence",
    /// "resume_token"}` for `heartbeat`, an ErrorResponse for `error`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// One page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPageJson {
    pub events: Vec<EventJson>,
    /// Pass as `page_token`, with the same filters, for the next page;
    /// empty on the last page.
    pub next_page_token: String,
}

/// The event list's filters and page; all filters given must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventListQuery {
    /// The resource changed, e.g. `allocations/{id}`.
    pub resource: Option<String>,
    /// Events of this employee (their bookings, and the employee).
    pub employee_id: Option<String>,
    /// Events of this vehicle (its bookings and blocks, and the vehicle).
    pub vehicle_id: Option<String>,
    /// Events made by this principal.
    pub actor: Option<String>,
    /// One kind, or several separated by commas.
    pub kind: Option<String>,
    /// From this instant on (RFC 3339, included).
    #[param(format = DateTime)]
    pub start_time: Option<String>,
    /// Up to this instant (RFC 3339, excluded).
    #[param(format = DateTime)]
    pub end_time: Option<String>,
    /// Rows per page, default 50, at most 500.
    #[param(minimum = 0)]
    pub page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
    // The stream's parameters, read to refuse them with a pointer to it.
    #[param(ignore)]
    pub after_sequence: Option<serde::de::IgnoredAny>,
    #[param(ignore)]
    pub resume_token: Option<serde::de::IgnoredAny>,
    #[param(ignore)]
    pub from_now: Option<serde::de::IgnoredAny>,
}

/// The stream's filters and where it starts; all filters given must match.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventStreamQuery {
    /// The resource changed, e.g. `allocations/{id}`.
    pub resource: Option<String>,
    /// Events of this employee (their bookings, and the employee).
    pub employee_id: Option<String>,
    /// Events of this vehicle (its bookings and blocks, and the vehicle).
    pub vehicle_id: Option<String>,
    /// Events made by this principal.
    pub actor: Option<String>,
    /// One kind, or several separated by commas.
    pub kind: Option<String>,
    /// From this instant on (RFC 3339, included).
    #[param(format = DateTime)]
    pub start_time: Option<String>,
    /// Up to this instant (RFC 3339, excluded).
    #[param(format = DateTime)]
    pub end_time: Option<String>,
    /// Start after this sequence (default: every stored event); at most the
    /// newest event's.
    #[param(minimum = 0)]
    pub after_sequence: Option<i64>,
    /// An event's or heartbeat's `resume_token` (or use `Last-Event-ID`).
    pub resume_token: Option<String>,
    /// `true`: only events stored after the stream starts, none of the
    /// stored ones. Not with `after_sequence`, `resume_token` or
    /// `Last-Event-ID`.
    pub from_now: Option<bool>,
    // The list's parameters, read to refuse them with a pointer to it.
    #[param(ignore)]
    pub page_size: Option<serde::de::IgnoredAny>,
    #[param(ignore)]
    pub page_token: Option<serde::de::IgnoredAny>,
}

/// An RFC 3339 query parameter as a protobuf timestamp.
fn timestamp(
    field: &str,
    value: Option<String>,
) -> Result<Option<prost_types::Timestamp>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let at = DateTime::parse_from_rfc3339(&value).map_err(|_| {
        ApiError::invalid_field(
            reasons::INVALID_FIELD,
            field,
            format!("{field} must be an RFC 3339 instant such as 2026-11-26T09:30:00Z"),
        )
    })?;
    Ok(Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }))
}

/// List the audit trail, oldest first.
///
/// `auditor` and `fleet_admin` see every event; `booking_agent` the events
/// of bookings; an `employee` the events of their own bookings.
#[utoipa::path(
    get, path = "/api/events", tag = "events", operation_id = "listEvents",
    params(EventListQuery),
    responses(
        (status = 200, description = "One page of events, oldest first.", body = EventPageJson),
    )
)]
pub async fn list_events(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    ApiQuery(q): ApiQuery<EventListQuery>,
) -> Result<Json<EventPageJson>, ApiError> {
    let stream_only = [
        ("after_sequence", q.after_sequence.is_some()),
        ("resume_token", q.resume_token.is_some()),
        ("from_now", q.from_now.is_some()),
    ];
    if let Some((field, _)) = stream_only.iter().find(|(_, given)| *given) {
        return Err(ApiError::invalid_field(
            reasons::UNKNOWN_FIELD,
            field,
            format!("{field} is a parameter of /api/events/stream; lists page with page_token"),
        ));
    }
    let request = v1::ListEventsRequest {
        start_time: timestamp("start_time", q.start_time)?,
        end_time: timestamp("end_time", q.end_time)?,
        resource: q.resource.unwrap_or_default(),
        employee_id: q.employee_id.unwrap_or_default(),
        vehicle_id: q.vehicle_id.unwrap_or_default(),
        actor: q.actor.unwrap_or_default(),
        kind: q.kind.unwrap_or_default(),
        page_size: q.page_size.unwrap_or_default(),
        page_token: q.page_token.unwrap_or_default(),
    };
    let page = upstream
        .events
        .clone()
        .list_events(id.grpc(request))
        .await?
        .into_inner();
    Ok(Json(EventPageJson {
        events: page.events.into_iter().map(EventJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Follow the audit trail as Server-Sent Events.
///
/// Sends every stored event after `after_sequence` (or `resume_token`, or
/// the `Last-Event-ID` header a reconnecting EventSource sends; or, with
/// `from_now=true`, after the newest stored event), then live ones, in
/// sequence order, with no gap and no duplicate. Filters and access as for
/// the list.
///
/// The answer is a `text/event-stream` that does not end. Its events:
///
/// - no `event:` line (an EventSource `message`): `id:` is the event's
///   sequence and `data:` an **EventJson** (the schema of the list's
///   events) as one line of JSON;
/// - `event: heartbeat`, every 15 seconds while nothing else is sent:
///   `data:` is `{"latest_sequence": 42, "resume_token": "42"}`;
/// - `event: error`, last: `data:` is an **ErrorResponse**, e.g. reason
///   `WATCH_TOO_SLOW` with `metadata.resume_token` for a subscriber that
///   fell too far behind.
#[utoipa::path(
    get, path = "/api/events/stream", tag = "events", operation_id = "streamEvents",
    params(
        EventStreamQuery,
        ("Last-Event-ID" = Option<String>, Header,
         description = "The id of the last event received: the stream resumes after it."),
    ),
    responses(
        (status = 200, description = "The stream: each event as the SSE fields `event`, `id` and `data` (see the operation's description for what `data` holds per `event`).",
         content_type = "text/event-stream", body = SseEventJson),
    )
)]
pub async fn stream_events(
    State(upstream): State<Upstream>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventStreamQuery>,
) -> Result<Response, ApiError> {
    if q.page_size.is_some() || q.page_token.is_some() {
        let field = if q.page_size.is_some() {
            "page_size"
        } else {
            "page_token"
        };
        return Err(ApiError::invalid_field(
            reasons::UNKNOWN_FIELD,
            field,
            format!("{field} is a parameter of /api/events; a stream does not page"),
        ));
    }
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(value.to_str().map(str::to_owned).map_err(|_| {
            ApiError::invalid_field(
                reasons::INVALID_FIELD,
                "Last-Event-ID",
                "Last-Event-ID must be visible ASCII",
            )
        })?),
        None => None,
    };
    let from_header = last_event_id.is_some();
    let request = v1::WatchEventsRequest {
        start_time: timestamp("start_time", q.start_time)?,
        end_time: timestamp("end_time", q.end_time)?,
        resource: q.resource.unwrap_or_default(),
        employee_id: q.employee_id.unwrap_or_default(),
        vehicle_id: q.vehicle_id.unwrap_or_default(),
        actor: q.actor.unwrap_or_default(),
        kind: q.kind.unwrap_or_default(),
        after_sequence: q.after_sequence.unwrap_or_default(),
        // The header wins: it is what a reconnecting EventSource knows.
        resume_token: last_event_id.or(q.resume_token).unwrap_or_default(),
        from_now: q.from_now.unwrap_or_default(),
    };
    let stream = upstream
        .events
        .clone()
        .watch_events(id.grpc(request))
        .await
        .map_err(|status| {
            let error = ApiError::from(status);
            if from_header {
                error.renamed_field("resume_token", "Last-Event-ID")
            } else {
                error
            }
        })?
        .into_inner();
    Ok(Sse::new(sse_events(stream))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The gRPC stream's messages as SSE events; an error is sent as
/// `event: error` and ends the stream.
fn sse_events(
    stream: impl Stream<Item = Result<v1::WatchEventsResponse, tonic::Status>> + Send + 'static,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    // tonic ends a stream after its error status.
    stream.map(|message| {
        let event = match message {
            Ok(v1::WatchEventsResponse {
                message: Some(watch_events_response::Message::Event(event)),
            }) => {
                let sequence = event.sequence;
                SseEvent::default()
                    .id(sequence.to_string())
                    .json_data(EventJson::from(event))
            }
            Ok(v1::WatchEventsResponse {
                message: Some(watch_events_response::Message::Heartbeat(beat)),
            }) => SseEvent::default()
                // A reconnect resumes after what the heartbeat covered.
                .id(beat.resume_token.clone())
                .event("heartbeat")
                .json_data(serde_json::json!({
                    "latest_sequence": beat.latest_sequence,
                    "resume_token": beat.resume_token,
                })),
            Ok(v1::WatchEventsResponse { message: None }) => {
                Ok(SseEvent::default().comment("empty message"))
            }
            Err(status) => SseEvent::default()
                .event("error")
                .json_data(ApiError::from(status).body()),
        };
        Ok(event.unwrap_or_else(|_| SseEvent::default().comment("unencodable message")))
    })
}
