//! REST onto gRPC from the bindings alone: the path, the query string, the
//! headers the call's hooks name and the JSON body become the request
//! message; the response message becomes JSON. Nothing here knows a call:
//! what a call takes and answers is read from its descriptors.
//!
//! The JSON is the REST contract's, which differs from proto3's canonical
//! mapping in four ways: field names are the proto's, every field is
//! written (defaults too, an absent message as `null`), 64-bit integers are
//! numbers, and timestamps always carry milliseconds.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};
use serde_json::Map;

use super::Upstream;
use super::bindings::{Binding, bindings};
use super::error::ApiError;
use super::extract::{field_error, json_object};
use super::middleware::RequestId;
use crate::domain::error::Echo;
use crate::reasons;

/// One call, ready to transcode.
struct Call {
    binding: &'static Binding,
    path: http::uri::PathAndQuery,
    input: MessageDescriptor,
    output: MessageDescriptor,
    /// The path's variables in order, each a field path of the request.
    variables: Vec<Vec<FieldDescriptor>>,
    /// The field the body fills (`None`: the whole request), when there is
    /// a body.
    body: Option<Option<FieldDescriptor>>,
    /// The query parameters.
    query: Vec<FieldDescriptor>,
    /// Request fields filled from headers, with the header's name.
    headers: Vec<(Vec<FieldDescriptor>, &'static str)>,
    /// Query parameters that may come as a header instead.
    alternatives: Vec<(FieldDescriptor, &'static str)>,
    /// Top-level body fields the caller may send.
    body_fields: Vec<FieldDescriptor>,
    /// The gRPC names of the fields the caller sent under another name
    /// (a body's field, a header, a path parameter), longest first.
    renames: Vec<(String, String)>,
    /// The response field holding what a create made (the field named as
    /// the request's body), when the response wraps it.
    created: Option<FieldDescriptor>,
}

/// The calls one route (a path and a method) reaches: one, or custom
/// methods told apart by the verb after the last `:`.
struct Route {
    calls: Vec<(Option<String>, Call)>,
}

/// Every call's route, from its binding, onto `upstream`.
pub fn routes(upstream: Upstream) -> Router {
    let pool = super::bindings::pool();
    let mut grouped: Vec<(String, &'static str, Route)> = Vec::new();
    for binding in bindings() {
        let (template, verb) = binding.template_and_verb();
        let (path, _) = axum_path(template);
        let call = (verb.map(str::to_owned), prepare(pool, binding));
        match grouped
            .iter_mut()
            .find(|(p, m, _)| *p == path && *m == binding.method)
        {
            Some((_, _, route)) => route.calls.push(call),
            None => grouped.push((path, binding.method, Route { calls: vec![call] })),
        }
    }
    let mut router = Router::new();
    for (path, method, route) in grouped {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            _ => MethodFilter::DELETE,
        };
        let (upstream, route) = (upstream.clone(), Arc::new(route));
        router = router.route(
            &path,
            on(
                filter,
                move |Extension(id): Extension<RequestId>, request: Request| {
                    let (upstream, route) = (upstream.clone(), route.clone());
                    async move { dispatch(&upstream, &route, &id, request).await }
                },
            ),
        );
    }
    router
}

/// The axum form of a binding's path and the field paths of its
/// variables. The REST contract names the first variable `id` and the
/// others by their field (`/api/vehicles/{id}/blocks/{block_id}`), and the
/// router needs one name per position.
pub(super) fn axum_path(template: &str) -> (String, Vec<String>) {
    let mut path = String::new();
    let mut fields = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let variable = &rest[open + 1..close];
        let field = variable.split('=').next().unwrap_or(variable);
        let name = match fields.len() {
            0 => "id",
            _ => field.rsplit('.').next().unwrap_or(field),
        };
        path.push_str(&format!("{{{name}}}"));
        fields.push(field.to_owned());
        rest = rest.get(close + 1..).unwrap_or_default();
    }
    path.push_str(rest);
    (path, fields)
}

/// The descriptors of a field path (`allocation.id`) from `message`.
pub(super) fn field_path(message: &MessageDescriptor, path: &str) -> Vec<FieldDescriptor> {
    let mut fields = Vec::new();
    let mut current = message.clone();
    for name in path.split('.') {
        let field = current
            .get_field_by_name(name)
            .unwrap_or_else(|| panic!("{} has no field {path}", message.full_name()));
        if let Kind::Message(inner) = field.kind() {
            current = inner;
        }
        fields.push(field);
    }
    fields
}

/// The method a gRPC path names.
pub(super) fn method_of(pool: &DescriptorPool, call: &str) -> MethodDescriptor {
    let (service, name) = call
        .trim_start_matches('/')
        .split_once('/')
        .expect("a gRPC path");
    pool.get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .unwrap_or_else(|| panic!("{call} is in the descriptor set"))
}

fn prepare(pool: &DescriptorPool, binding: &'static Binding) -> Call {
    let method = method_of(pool, &binding.call);
    let input = method.input();
    let (template, _) = binding.template_and_verb();
    let (_, variables) = axum_path(template);
    let variables: Vec<_> = variables.iter().map(|v| field_path(&input, v)).collect();
    let body = binding.body.as_deref().map(|body| {
        (body != "*").then(|| {
            input
                .get_field_by_name(body)
                .unwrap_or_else(|| panic!("{} has no field {body}", input.full_name()))
        })
    });
    let headers: Vec<_> = binding
        .hooks
        .headers
        .iter()
        .map(|(field, header)| (field_path(&input, field), *header))
        .collect();
    let body_fields = body_fields(binding, &input);
    let created = binding
        .body
        .as_deref()
        .and_then(|name| method.output().get_field_by_name(name))
        .filter(|_| binding.hooks.created);
    let renames = renames(binding, &body_fields);
    Call {
        renames,
        binding,
        path: binding.call.parse().expect("a gRPC path is a URI path"),
        output: method.output(),
        created,
        query: binding
            .query
            .iter()
            .map(|name| field_path(&input, name).remove(0))
            .collect(),
        alternatives: binding
            .hooks
            .header_alternatives
            .iter()
            .map(|(field, header)| (field_path(&input, field).remove(0), *header))
            .collect(),
        input,
        variables,
        body,
        headers,
        body_fields,
    }
}

/// What the caller calls the request's fields it sent otherwise than as
/// top-level query parameters or body fields of the same name.
fn renames(binding: &Binding, body_fields: &[FieldDescriptor]) -> Vec<(String, String)> {
    let mut renames: Vec<(String, String)> = Vec::new();
    let (template, _) = binding.template_and_verb();
    let (path, variables) = axum_path(template);
    let names = path.split('{').skip(1).filter_map(|v| v.split('}').next());
    for (variable, name) in variables.iter().zip(names) {
        renames.push((variable.clone(), name.to_owned()));
    }
    for (field, header) in binding.hooks.headers {
        renames.push(((*field).to_owned(), (*header).to_owned()));
    }
    if let Some(body) = binding.body.as_deref().filter(|b| *b != "*") {
        for field in body_fields {
            renames.push((format!("{body}.{}", field.name()), field.name().to_owned()));
        }
    }
    if binding.hooks.mask_from_body {
        renames.push(("update_mask.paths".to_owned(), "body".to_owned()));
        renames.push(("update_mask".to_owned(), "body".to_owned()));
    }
    renames.retain(|(from, to)| from != to);
    renames.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    renames
}

/// The top-level fields of a call's body the caller may send: the body
/// message's, less those whose comment starts "Output only", those the
/// path and headers fill, and for an update those its mask may not name.
pub(super) fn body_fields(binding: &Binding, input: &MessageDescriptor) -> Vec<FieldDescriptor> {
    let Some(body) = binding.body.as_deref() else {
        return Vec::new();
    };
    let message = match input.get_field_by_name(body).map(|f| f.kind()) {
        Some(Kind::Message(message)) => message,
        _ => input.clone(),
    };
    let (template, _) = binding.template_and_verb();
    let (_, variables) = axum_path(template);
    let taken: Vec<FieldDescriptor> = variables
        .iter()
        .map(String::as_str)
        .chain(binding.hooks.headers.iter().map(|(field, _)| *field))
        .filter_map(|path| field_path(input, path).pop())
        .collect();
    let updatable =
        crate::grpc::mask::updatable(&binding.call).filter(|_| binding.hooks.mask_from_body);
    message
        .fields()
        .filter(|f| !output_only(f) && !taken.contains(f))
        .filter(|f| updatable.is_none_or(|names| names.contains(&f.name())))
        .filter(|f| !(binding.hooks.mask_from_body && f.name() == "update_mask"))
        .collect()
}

/// Whether a field's proto comment starts "Output only": the REST caller
/// does not send it.
pub fn output_only(field: &FieldDescriptor) -> bool {
    super::openapi::text_of(field.parent_file(), field.path()).starts_with("Output only")
}

/// Picks the route's call (by its custom verb, if any) and transcodes.
async fn dispatch(
    upstream: &Upstream,
    route: &Route,
    id: &RequestId,
    request: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let mut values = Vec::new();
    if route
        .calls
        .iter()
        .any(|(_, call)| !call.variables.is_empty())
    {
        use axum::extract::FromRequestParts as _;
        let params = axum::extract::RawPathParams::from_request_parts(&mut parts, &())
            .await
            .map_err(|rejection| {
                ApiError::invalid_field(reasons::INVALID_FIELD, "path", rejection.body_text())
            })?;
        values = params.iter().map(|(_, value)| value.to_owned()).collect();
    }
    let call = match route.calls.as_slice() {
        [(None, call)] => call,
        calls => {
            // A custom method: `{id}:verb` is one segment.
            let last = values.pop().unwrap_or_default();
            let found = last.rsplit_once(':').and_then(|(value, verb)| {
                calls
                    .iter()
                    .find(|(v, _)| v.as_deref() == Some(verb))
                    .map(|(_, call)| (value.to_owned(), call))
            });
            let Some((value, call)) = found else {
                return Err(no_such_action(parts.uri.path(), calls));
            };
            values.push(value);
            call
        }
    };
    transcode(upstream, call, id, parts, body, values).await
}

/// The answer to a custom method the resource does not have.
fn no_such_action(path: &str, calls: &[(Option<String>, Call)]) -> ApiError {
    let actions: Vec<String> = calls
        .iter()
        .map(|(_, call)| format!("{} {}", call.binding.method, call.binding.path))
        .collect();
    ApiError::new(
        reasons::NO_SUCH_PATH,
        format!(
            "there is no POST {}; the actions are {}",
            Echo(path),
            actions.join(", ")
        ),
    )
}

async fn transcode(
    upstream: &Upstream,
    call: &Call,
    id: &RequestId,
    parts: http::request::Parts,
    body: axum::body::Body,
    values: Vec<String>,
) -> Result<Response, ApiError> {
    let mut message = DynamicMessage::new(call.input.clone());
    // In the variables' order (see `axum_path`).
    for (value, fields) in values.into_iter().zip(&call.variables) {
        set_path(&mut message, fields, Value::String(value));
    }
    let alternative = read_query(&mut message, call, &parts.headers, parts.uri.query())?;
    for (fields, name) in &call.headers {
        if let Some(value) = header_value(&parts.headers, name)? {
            set_path(&mut message, fields, Value::String(value));
        }
    }
    let uri = parts.uri.clone();
    if let Some(body_field) = &call.body {
        let object = json_object(Request::from_parts(parts, body)).await?;
        let target = match body_field {
            Some(field) => match field.kind() {
                Kind::Message(kind) => DynamicMessage::new(kind),
                _ => unreachable!("checked in prepare"),
            },
            None => std::mem::replace(&mut message, DynamicMessage::new(call.input.clone())),
        };
        let (mut filled, present) = read_body(target, &object, &call.body_fields)?;
        if let Some(field) = body_field {
            // The path and the headers may have set fields of it already.
            if let Some(earlier) = message.get_field(field).as_message() {
                for (f, v) in earlier.fields() {
                    filled.set_field(&f, v.clone());
                }
            }
            message.set_field(field, Value::Message(filled));
        } else {
            message = filled;
        }
        if call.binding.hooks.mask_from_body
            && let Some(mask) = call.input.get_field_by_name("update_mask")
            && let Kind::Message(kind) = mask.kind()
        {
            let mut value = DynamicMessage::new(kind);
            value.set_field_by_name(
                "paths",
                Value::List(present.into_iter().map(Value::String).collect()),
            );
            message.set_field(&mask, Value::Message(value));
        }
    }
    // An error names each field as the caller sent it.
    let renamed = |status: tonic::Status| {
        let error = ApiError::from(status).renamed(&call.renames);
        match alternative {
            Some((field, header)) => error.renamed(&[(field.to_owned(), header.to_owned())]),
            None => error,
        }
    };
    if call.binding.hooks.stream {
        let stream = watch(upstream, call, id.grpc(message))
            .await
            .map_err(renamed)?;
        return Ok(server_sent(call, stream));
    }
    let answer = send(upstream, call, id.grpc(message))
        .await
        .map_err(renamed)?;
    respond(call, &uri, answer)
}

fn set_path(message: &mut DynamicMessage, fields: &[FieldDescriptor], value: Value) {
    match fields {
        [] => {}
        [last] => message.set_field(last, value),
        [first, rest @ ..] => {
            if let Some(inner) = message.get_field_mut(first).as_message_mut() {
                set_path(inner, rest, value);
            }
        }
    }
}

/// A header's value as text; `If-Match` unquoted (and `*` as none).
fn header_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    if name.eq_ignore_ascii_case("If-Match") {
        return if_match(headers).map(|v| Some(v).filter(|v| !v.is_empty()));
    }
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.to_owned())).map_err(|_| {
            ApiError::invalid_field(
                reasons::INVALID_FIELD,
                name,
                format!("{name} must be visible ASCII"),
            )
        }),
    }
}

/// Fills the query parameters; returns the field a header filled instead,
/// with the header's name, if any.
fn read_query(
    message: &mut DynamicMessage,
    call: &Call,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<(&'static str, &'static str)>, ApiError> {
    // A call that takes no query parameters ignores the query string, as
    // the REST contract always has.
    let query = query.filter(|_| !call.query.is_empty());
    let mut seen: Vec<&FieldDescriptor> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(field) = call.query.iter().find(|f| f.name() == key) else {
            return Err(unknown_parameter(call, &key));
        };
        // Given twice is ambiguous, even when the first was a default.
        if seen.contains(&field) {
            return Err(field_error(
                &key,
                &format!("duplicate field `{key}`"),
                "query",
            ));
        }
        seen.push(field);
        // An empty time is no bound, as the hand-written gateway read it.
        if value.is_empty() && matches!(field.kind(), Kind::Message(_)) {
            continue;
        }
        let value = scalar_from_text(field, &value)
            .map_err(|what| field_error(&key, &format!("invalid value: {what}"), "query"))?;
        message.set_field(field, value);
    }
    let mut used = None;
    for ((field, name), (field_name, _)) in call
        .alternatives
        .iter()
        .zip(call.binding.hooks.header_alternatives)
    {
        // The header wins: it is what a reconnecting EventSource knows.
        if let Some(value) = header_value(headers, name)? {
            message.set_field(field, Value::String(value));
            used = Some((*field_name, *name));
        }
    }
    Ok(used)
}

/// The refusal of a query parameter the call does not take; when a call
/// on a neighbouring path takes it, the message says which.
fn unknown_parameter(call: &Call, name: &str) -> ApiError {
    let neighbour = bindings().iter().find(|other| {
        other.call != call.binding.call
            && other.query.iter().any(|q| q == name)
            && other.path.split('/').nth(2) == call.binding.path.split('/').nth(2)
    });
    match neighbour {
        Some(other) => ApiError::invalid_field(
            reasons::UNKNOWN_FIELD,
            name,
            format!(
                "{name} is a parameter of {} {}, not of {} {}",
                other.method, other.path, call.binding.method, call.binding.path
            ),
        ),
        None => unknown(name, call.query.iter()),
    }
}

/// A query parameter's text as the field's value.
fn scalar_from_text(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    let number = |what: &str| format!("`{}`, expected {what}", Echo(text));
    Ok(match field.kind() {
        Kind::String => Value::String(text.to_owned()),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(text.parse().map_err(|_| number("i32"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(text.parse().map_err(|_| number("i64"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| number("u32"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| number("u64"))?),
        Kind::Bool => Value::Bool(match text {
            "true" => true,
            "false" => false,
            _ => return Err(number("a boolean")),
        }),
        Kind::Message(kind) if kind.full_name() == "google.protobuf.Timestamp" => Value::Message(
            timestamp_from(&kind, text)
                .ok_or_else(|| number("an RFC 3339 time such as 2099-01-01T09:30:00Z"))?,
        ),
        _ => return Err(number("a value this parameter takes")),
    })
}

fn timestamp_from(kind: &MessageDescriptor, text: &str) -> Option<DynamicMessage> {
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let mut message = DynamicMessage::new(kind.clone());
    message.set_field_by_name("seconds", Value::I64(time.timestamp()));
    message.set_field_by_name("nanos", Value::I32(time.timestamp_subsec_nanos() as i32));
    Some(message)
}

/// The "unknown field" refusal, with the names that would do.
fn unknown<'a>(name: &str, known: impl Iterator<Item = &'a FieldDescriptor>) -> ApiError {
    let names: Vec<String> = known.map(|f| format!("`{}`", f.name())).collect();
    let expected = match names.as_slice() {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        many => format!("expected one of {}", many.join(", ")),
    };
    field_error(name, &format!("unknown field `{name}`, {expected}"), "body")
}

/// Fills `message` from a JSON object with the fields `allowed`; `null`
/// leaves a field at its default. Returns the names present, in the
/// object's order.
fn read_body(
    mut message: DynamicMessage,
    object: &Map<String, serde_json::Value>,
    allowed: &[FieldDescriptor],
) -> Result<(DynamicMessage, Vec<String>), ApiError> {
    let mut present = Vec::with_capacity(object.len());
    for (name, json) in object {
        let Some(field) = allowed.iter().find(|f| f.name() == name) else {
            return Err(unknown(name, allowed.iter()));
        };
        present.push(name.clone());
        if json.is_null() {
            continue;
        }
        let value = from_json(&field.kind(), field.is_list(), json)
            .map_err(|what| field_error(name, &what, "body"))?;
        message.set_field(field, value);
    }
    Ok((message, present))
}

fn from_json(kind: &Kind, list: bool, json: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    if list {
        let J::Array(items) = json else {
            return Err(invalid(json, "a sequence"));
        };
        return items
            .iter()
            .map(|item| from_json(kind, false, item))
            .collect::<Result<_, _>>()
            .map(Value::List);
    }
    let integer = |what: &str| {
        json.as_i64()
            .filter(|_| json.is_i64() || json.is_u64())
            .ok_or_else(|| invalid(json, what))
    };
    Ok(match kind {
        Kind::String => Value::String(
            json.as_str()
                .ok_or_else(|| invalid(json, "a string"))?
                .to_owned(),
        ),
        Kind::Bool => Value::Bool(json.as_bool().ok_or_else(|| invalid(json, "a boolean"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(
            i32::try_from(integer("i32")?)
                .map_err(|_| format!("invalid value: integer `{json}`, expected i32"))?,
        ),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(integer("i64")?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            u32::try_from(integer("u32")?)
                .map_err(|_| format!("invalid value: integer `{json}`, expected u32"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(json.as_u64().ok_or_else(|| invalid(json, "u64"))?)
        }
        Kind::Message(message) if message.full_name() == "google.protobuf.Timestamp" => {
            let text = json.as_str().ok_or_else(|| invalid(json, "a string"))?;
            Value::Message(timestamp_from(message, text).ok_or_else(|| {
                format!("invalid value: `{}`, expected an RFC 3339 time", Echo(text))
            })?)
        }
        _ => return Err(invalid(json, "a value this field takes")),
    })
}

/// serde's wording for a value of the wrong type.
fn invalid(json: &serde_json::Value, expected: &str) -> String {
    use serde_json::Value as J;
    let found = match json {
        J::Null => "null".to_owned(),
        J::Bool(b) => format!("boolean `{b}`"),
        J::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        J::Number(n) => format!("integer `{n}`"),
        J::String(s) => format!("string \"{}\"", Echo(s)),
        J::Array(_) => "sequence".to_owned(),
        J::Object(_) => "map".to_owned(),
    };
    format!("invalid type: {found}, expected {expected}")
}

/// Sends one unary call with `request` through the gRPC edge.
async fn send(
    upstream: &Upstream,
    call: &Call,
    request: tonic::Request<DynamicMessage>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(upstream.service.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("service was not ready: {e}")))?;
    grpc.unary(request, call.path.clone(), Codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Opens a server stream with `request` through the gRPC edge.
async fn watch(
    upstream: &Upstream,
    call: &Call,
    request: tonic::Request<DynamicMessage>,
) -> Result<tonic::Streaming<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(upstream.service.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("service was not ready: {e}")))?;
    grpc.server_streaming(request, call.path.clone(), Codec)
        .await
        .map(tonic::Response::into_inner)
}

/// A server stream as server-sent events (see [`super::bindings::Hooks`]);
/// an error is sent as `event: error` and ends it.
fn server_sent(call: &Call, stream: tonic::Streaming<Vec<u8>>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::StreamExt as _;
    let ids = call.binding.hooks.event_ids;
    let output = call.output.clone();
    let first = output.oneofs().next().and_then(|o| o.fields().next());
    let first = first.map(|f| f.name().to_owned());
    let events = stream.map(move |message| {
        let event = match message {
            Ok(bytes) => {
                let plans = super::wire::plans();
                match plans.oneof_member(&output, &bytes) {
                    None => Event::default().comment("empty message"),
                    Some((member, inner)) => {
                        let kind = output
                            .get_field_by_name(member)
                            .map(|f| f.kind())
                            .and_then(|k| k.as_message().cloned());
                        let mut event = Event::default();
                        if first.as_deref() != Some(member) {
                            event = event.event(member);
                        }
                        let id_field = ids.iter().find(|(m, _)| *m == member).map(|(_, f)| *f);
                        let mut json = Vec::with_capacity(inner.len() * 2);
                        match kind {
                            Some(kind) => {
                                if let Some(id) = id_field.and_then(|f| plans.text(&kind, inner, f))
                                {
                                    event = event.id(id);
                                }
                                match plans.write(&kind, inner, &mut json) {
                                    Ok(()) => event.data(String::from_utf8_lossy(&json)),
                                    Err(_) => Event::default().comment("unencodable message"),
                                }
                            }
                            None => Event::default().comment("unencodable message"),
                        }
                    }
                }
            }
            Err(status) => Event::default()
                .event("error")
                .json_data(ApiError::from(status).body())
                .unwrap_or_else(|_| Event::default().comment("unencodable message")),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn respond(call: &Call, uri: &http::Uri, answer: Vec<u8>) -> Result<Response, ApiError> {
    let hooks = &call.binding.hooks;
    if hooks.deleted {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let plans = super::wire::plans();
    let made = match (&call.created, hooks.created) {
        (_, false) => None,
        (Some(field), true) => match field.kind() {
            Kind::Message(kind) => plans
                .field_bytes(&call.output, &answer, field.name())
                .and_then(|inner| plans.text(&kind, inner, "id")),
            _ => None,
        },
        (None, true) => plans.text(&call.output, &answer, "id"),
    };
    let mut body = Vec::with_capacity(answer.len() * 2 + 16);
    plans
        .write(&call.output, &answer, &mut body)
        .map_err(|error| {
            tracing::error!(%error, "writing a gRPC answer as JSON");
            ApiError::new(reasons::INTERNAL, "internal error")
        })?;
    let status = if hooks.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Bytes::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = made {
        let location = HeaderValue::from_str(&format!("{}/{id}", uri.path()))
            .map_err(|_| ApiError::new(reasons::INTERNAL, "internal error"))?;
        headers.insert(header::LOCATION, location);
    }
    if let Some(etag) = plans.text(&call.output, &answer, "etag") {
        headers.insert(header::ETAG, etag_header(&etag));
    }
    Ok(response)
}

/// The `ETag` header for a booking's etag: the same value, quoted.
fn etag_header(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The etag named by `If-Match`, unquoted; empty when absent or `*`.
fn if_match(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(String::new());
    };
    let invalid = || {
        ApiError::invalid_field(
            reasons::INVALID_ETAG,
            "If-Match",
            "If-Match must be one etag as returned in the ETag header, e.g. \"3\"",
        )
    };
    let value = value.to_str().map_err(|_| invalid())?.trim();
    if value == "*" {
        return Ok(String::new());
    }
    if value.contains(',') || value.starts_with("W/") {
        return Err(invalid());
    }
    Ok(value.trim_matches('"').to_owned())
}

/// A gRPC codec that sends dynamic messages and takes the answers' bytes
/// as they are (see [`super::wire`]).
struct Codec;

struct Decoder;

struct Encoder;

impl tonic::codec::Codec for Codec {
    type Encode = DynamicMessage;
    type Decode = Vec<u8>;
    type Encoder = Encoder;
    type Decoder = Decoder;

    fn encoder(&mut self) -> Encoder {
        Encoder
    }

    fn decoder(&mut self) -> Decoder {
        Decoder
    }
}

impl tonic::codec::Encoder for Encoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: DynamicMessage,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding: {e}")))
    }
}

impl tonic::codec::Decoder for Decoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf as _;
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1;
    use serde_json::json;

    fn pool() -> &'static DescriptorPool {
        super::super::bindings::pool()
    }

    /// `message` as the generic writer puts it.
    fn generic<M: prost::Message>(message: &M, name: &str) -> serde_json::Value {
        let descriptor = pool()
            .get_message_by_name(&format!("vehicle_allocation.v1.{name}"))
            .unwrap();
        let mut json = Vec::new();
        super::super::wire::plans()
            .write(&descriptor, &message.encode_to_vec(), &mut json)
            .unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    fn time(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    fn driver(licence: &str) -> v1::Driver {
        v1::Driver {
            id: "drv-1".into(),
            name: "Corine".into(),
            phone: "+44 20".into(),
            license_number: licence.into(),
            active: true,
            create_time: time(4_070_000_000, 0),
            update_time: time(4_070_000_001, 123_000_000),
            etag: "2".into(),
        }
    }

    fn allocation() -> v1::Allocation {
        v1::Allocation {
            id: "a-1".into(),
            employee_id: "emp-1".into(),
            vehicle_id: "veh-1".into(),
            driver_id: "drv-1".into(),
            allocation_date: "2099-01-08".into(),
            purpose: String::new(),
            create_time: time(4_070_000_000, 5_000_000),
            update_time: None,
            etag: "1".into(),
        }
    }

    /// The JSON the hand-written types made before the calls were
    /// transcoded (recorded from them), message by message: defaults, an
    /// absent message as null, a withheld licence left out, milliseconds.
    #[test]
    fn the_generic_json_is_the_contracts_json() {
        let a = allocation();
        assert_eq!(
            generic(&a, "Allocation"),
            json!({"id":"a-1","employee_id":"emp-1","vehicle_id":"veh-1","driver_id":"drv-1","allocation_date":"2099-01-08","purpose":"","create_time":"2098-12-21T11:33:20.005Z","update_time":"","etag":"1"})
        );
        let e = v1::Employee {
            id: "emp-1".into(),
            name: "Joel".into(),
            email: "joel@example.com".into(),
            department: String::new(),
            active: false,
            create_time: time(0, 0),
            update_time: time(4_070_000_000, 999_999_999),
            etag: "7".into(),
        };
        assert_eq!(
            generic(&e, "Employee"),
            json!({"id":"emp-1","name":"Joel","email":"joel@example.com","department":"","active":false,"create_time":"1970-01-01T00:00:00.000Z","update_time":"2098-12-21T11:33:20.999Z","etag":"7"})
        );
        assert_eq!(
            generic(&driver("DL1"), "Driver"),
            json!({"id":"drv-1","name":"Corine","phone":"+44 20","license_number":"DL1","active":true,"create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:21.123Z","etag":"2"})
        );
        assert_eq!(
            generic(&driver(""), "Driver"),
            json!({"id":"drv-1","name":"Corine","phone":"+44 20","active":true,"create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:21.123Z","etag":"2"})
        );
        for (with_driver, expected) in [
            (
                true,
                json!({"id":"veh-1","registration":"AB12 CDE","make":"Skoda","model":"","seats":4,"driver_id":"drv-1","driver":{"id":"drv-1","name":"Corine","phone":"+44 20","active":true,"create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:21.123Z","etag":"2"},"retired":true,"create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:20.000Z","etag":"3"}),
            ),
            (
                false,
                json!({"id":"veh-1","registration":"AB12 CDE","make":"Skoda","model":"","seats":4,"driver_id":"","driver":null,"retired":true,"create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:20.000Z","etag":"3"}),
            ),
        ] {
            let v = v1::Vehicle {
                id: "veh-1".into(),
                registration: "AB12 CDE".into(),
                make: "Skoda".into(),
                model: String::new(),
                seats: 4,
                driver_id: if with_driver {
                    "drv-1".into()
                } else {
                    String::new()
                },
                driver: with_driver.then(|| driver("")),
                retired: true,
                create_time: time(4_070_000_000, 0),
                update_time: time(4_070_000_000, 0),
                etag: "3".into(),
            };
            assert_eq!(generic(&v, "Vehicle"), expected);
        }
        let b = v1::VehicleBlock {
            id: "b-1".into(),
            vehicle_id: "veh-1".into(),
            start_date: "2099-01-08".into(),
            end_date: "2099-01-09".into(),
            reason: "service".into(),
            create_time: time(4_070_000_000, 0),
            update_time: time(4_070_000_000, 0),
            etag: "1".into(),
        };
        assert_eq!(
            generic(&b, "VehicleBlock"),
            json!({"id":"b-1","vehicle_id":"veh-1","start_date":"2099-01-08","end_date":"2099-01-09","reason":"service","create_time":"2098-12-21T11:33:20.000Z","update_time":"2098-12-21T11:33:20.000Z","etag":"1"})
        );
        let snapshot = |a: v1::Allocation| v1::Snapshot {
            resource: Some(v1::snapshot::Resource::Allocation(a)),
        };
        for (before, after, expected) in [
            (
                None,
                Some(snapshot(allocation())),
                json!({"sequence":9_007_199_254_740_993_i64,"event_time":"2098-12-21T11:33:20.001Z","actor":{"id":"emp-1","roles":["employee","auditor"]},"request_id":"r-1","kind":"allocation.created","resource":"allocations/a-1","before":null,"after":{"allocation":{"id":"a-1","employee_id":"emp-1","vehicle_id":"veh-1","driver_id":"drv-1","allocation_date":"2099-01-08","purpose":"","create_time":"2098-12-21T11:33:20.005Z","update_time":"","etag":"1"}},"resume_token":"t"}),
            ),
            (
                Some(snapshot(allocation())),
                None,
                json!({"sequence":9_007_199_254_740_993_i64,"event_time":"2098-12-21T11:33:20.001Z","actor":{"id":"emp-1","roles":["employee","auditor"]},"request_id":"r-1","kind":"allocation.created","resource":"allocations/a-1","before":{"allocation":{"id":"a-1","employee_id":"emp-1","vehicle_id":"veh-1","driver_id":"drv-1","allocation_date":"2099-01-08","purpose":"","create_time":"2098-12-21T11:33:20.005Z","update_time":"","etag":"1"}},"after":null,"resume_token":"t"}),
            ),
        ] {
            let event = v1::Event {
                sequence: 9_007_199_254_740_993,
                event_time: time(4_070_000_000, 1_000_000),
                actor: Some(v1::Actor {
                    id: "emp-1".into(),
                    roles: vec!["employee".into(), "auditor".into()],
                }),
                request_id: "r-1".into(),
                kind: "allocation.created".into(),
                resource: "allocations/a-1".into(),
                before,
                after,
                resume_token: "t".into(),
            };
            assert_eq!(generic(&event, "Event"), expected);
        }
    }

    #[test]
    fn the_router_names_path_variables_as_the_contract_does() {
        assert_eq!(
            axum_path("/api/vehicles/{vehicle_id}/blocks/{block_id}"),
            (
                "/api/vehicles/{id}/blocks/{block_id}".to_owned(),
                vec!["vehicle_id".to_owned(), "block_id".to_owned()]
            )
        );
        assert_eq!(
            axum_path("/api/allocations/{allocation.id}").0,
            "/api/allocations/{id}"
        );
    }

    #[test]
    fn output_only_fields_are_told_by_their_comment() {
        let pool = pool();
        let allocation = pool
            .get_message_by_name("vehicle_allocation.v1.Allocation")
            .unwrap();
        let out: Vec<_> = allocation
            .fields()
            .filter(output_only)
            .map(|f| f.name().to_owned())
            .collect();
        assert_eq!(
            out,
            ["id", "driver_id", "create_time", "update_time", "etag"]
        );
    }
}
