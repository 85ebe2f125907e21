//! The REST operations and their schemas in the OpenAPI document, written
//! from the bindings and the messages' descriptors, with the proto's
//! comments as their descriptions.
//!
//! A few phrases in a comment say more than prose (the proto is the one
//! place a call is defined):
//! - a comment starting "Output only" marks a field the caller does not
//!   send (it is left out of request bodies);
//! - one starting "Required" marks a field a create's body must have, or a
//!   query parameter that must be given;
//! - "Not negative." gives an integer the minimum 0;
//! - "Always set." on a message field of a response: never null (the
//!   gateway writes an empty message if the service left it unset);
//! - "YYYY-MM-DD" makes a string a `date`;
//! - a last paragraph "Example: <JSON>" is the example of the field, or of
//!   the message (on a request's body field: of the body).

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor, OneofDescriptor};
use serde_json::{Map, Value, json};

use super::bindings::{Binding, OMITTED_WHEN_EMPTY, bindings};
use super::transcode::{axum_path, body_fields, field_path, method_of};

type Schemas = Map<String, Value>;

/// The paths and the schemas of every binding.
pub fn paths_and_schemas() -> (Map<String, Value>, Schemas) {
    let pool = super::bindings::pool();
    let mut paths = Map::new();
    let mut schemas = Schemas::new();
    for binding in bindings() {
        let method = method_of(pool, &binding.call);
        let (path, _) = axum_path(&binding.path);
        let operation = operation(binding, &method, &mut schemas);
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[binding.method.to_lowercase()] = operation;
    }
    (paths, schemas)
}

fn operation(binding: &Binding, method: &MethodDescriptor, schemas: &mut Schemas) -> Value {
    let input = method.input();
    let (summary, description) = summary(&text_of(method.parent_file(), method.path()));
    let mut parameters = Vec::new();
    let (_, variables) = axum_path(&binding.path);
    let (names, _) = axum_path(&binding.path);
    let names: Vec<&str> = names
        .split('{')
        .skip(1)
        .filter_map(|v| v.split('}').next())
        .collect();
    for (name, variable) in names.iter().zip(&variables) {
        let field = last_field(&input, variable);
        let (text, example) = described(&field);
        let mut parameter = json!({
            "name": name, "in": "path", "required": true,
            "schema": {"type": "string"},
        });
        put_text(&mut parameter, &text);
        if let Some(example) = example {
            parameter["example"] = example;
        }
        parameters.push(parameter);
    }
    for name in &binding.query {
        let field = last_field(&input, name);
        let (text, _) = described(&field);
        let mut parameter = json!({
            "name": name, "in": "query",
            "required": text.starts_with("Required"),
            "schema": scalar_schema(&field, &text, schemas),
        });
        put_text(&mut parameter, &text);
        parameters.push(parameter);
    }
    for (field, header) in binding
        .hooks
        .headers
        .iter()
        .chain(binding.hooks.header_alternatives)
    {
        let (text, _) = described(&last_field(&input, field));
        let mut parameter = json!({
            "name": header, "in": "header", "required": false,
            "schema": {"type": ["string", "null"]},
        });
        put_text(&mut parameter, &text);
        parameters.push(parameter);
    }
    let tag = tag(binding, method);
    let mut operation = json!({
        "tags": [tag],
        "operationId": binding.operation_id,
        "parameters": parameters,
        "responses": responses(binding, method, schemas),
    });
    put(&mut operation, "summary", &summary);
    let description = if binding.hooks.stream {
        let events = server_sent_events(binding, &method.output(), schemas);
        format!("{description}\n\n{events}").trim().to_owned()
    } else {
        description
    };
    put(&mut operation, "description", &description);
    if let Some(body) = &binding.body {
        let name = body_schema(binding, method, body, schemas);
        operation["requestBody"] = json!({
            "content": {"application/json": {"schema": reference(&name)}},
            "required": true,
        });
    }
    operation
}

/// The tag: the service, and for the fleet its readers apart from its
/// administrators.
fn tag(binding: &Binding, method: &MethodDescriptor) -> &'static str {
    match method.parent_service().name() {
        "AllocationService" => "allocations",
        "EventService" => "events",
        _ if binding.method == "GET" => "fleet",
        _ => "fleet administration",
    }
}

fn responses(binding: &Binding, method: &MethodDescriptor, schemas: &mut Schemas) -> Value {
    let hooks = &binding.hooks;
    let output = method.output();
    if hooks.deleted {
        return json!({"204": {"description": "Done; there is no body."}});
    }
    if hooks.stream {
        let name = stream_schema(schemas);
        return json!({"200": {
            "description": "The stream: each message as a server-sent event with the fields `event`, `id` and `data`.",
            "content": {"text/event-stream": {"schema": reference(&name)}},
        }});
    }
    let name = message_schema(&output, schemas);
    let (text, _) = split_example(&text_of(output.parent_file(), output.path()));
    let (summary, _) = summary(&text);
    let mut response = json!({
        "description": if summary.is_empty() { "OK.".to_owned() } else { summary },
        "content": {"application/json": {"schema": reference(&name)}},
    });
    let made = match binding.body.as_deref() {
        Some(body) if hooks.created => output
            .get_field_by_name(body)
            .and_then(|f| match f.kind() {
                Kind::Message(m) => Some(m),
                _ => None,
            })
            .unwrap_or_else(|| output.clone()),
        _ => output.clone(),
    };
    let mut headers = Map::new();
    if hooks.created {
        headers.insert(
            "Location".into(),
            json!({"schema": {"type": "string"}, "description": "The new resource's URL."}),
        );
    }
    if output.get_field_by_name("etag").is_some()
        || (hooks.created && made.get_field_by_name("etag").is_some() && made == output)
    {
        headers.insert(
            "ETag".into(),
            json!({"schema": {"type": "string"}, "description": "The resource's etag, quoted: send it back as If-Match."}),
        );
    }
    if !headers.is_empty() {
        response["headers"] = Value::Object(headers);
    }
    let status = if hooks.created { "201" } else { "200" };
    json!({ status: response })
}

/// The schema of a body: the request's body field's message, or the
/// request, with the fields the caller sends.
fn body_schema(
    binding: &Binding,
    method: &MethodDescriptor,
    body: &str,
    schemas: &mut Schemas,
) -> String {
    let input = method.input();
    let (message, field_text) = match input.get_field_by_name(body) {
        Some(field) => match field.kind() {
            Kind::Message(message) => (message, text_of(field.parent_file(), field.path())),
            _ => (input.clone(), String::new()),
        },
        None => (input.clone(), text_of(input.parent_file(), input.path())),
    };
    let update = binding.hooks.mask_from_body;
    let name = if body == "*" {
        schema_name(&input)
    } else if update {
        kept(format!("{}ChangesJson", message.name()))
    } else {
        kept(format!("New{}Json", message.name()))
    };
    if schemas.contains_key(&name) {
        return name;
    }
    let (text, example) = split_example(&field_text);
    let mut properties = Map::new();
    let mut required = Vec::new();
    for field in body_fields(binding, &input) {
        let (field_text, _) = described(&field);
        let mut schema = field_schema(&field, &field_text, schemas);
        if update {
            // null clears the field.
            nullable(&mut schema);
        } else if field_text.starts_with("Required") {
            required.push(field.name().to_owned());
        }
        properties.insert(field.name().to_owned(), schema);
    }
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    put_text(&mut schema, &text);
    if let Some(example) = example {
        schema["example"] = example;
    }
    schemas.insert(name.clone(), schema);
    name
}

/// The names the REST contract's schemas had before they were written
/// from the proto, where the rules of [`schema_name`] give another: kept,
/// since clients' generated code is named after them.
const KEPT_NAMES: &[(&str, &str)] = &[
    ("NewVehicleBlockJson", "NewBlockJson"),
    ("VehicleBlockPageJson", "BlockPageJson"),
    ("CreatedVehicleBlockJson", "CreatedBlockJson"),
    ("AssignDriverJson", "DriverAssignmentJson"),
];

/// A message's schema name: `<Message>Json`; a list's answer
/// `<Item>PageJson`; another answer `<Verb>ed<Object>Json`
/// (`DeactivatedEmployeeJson`); a request `<Call>Json`.
fn schema_name(message: &MessageDescriptor) -> String {
    let name = message.name();
    let rule = if let Some(rest) = name.strip_suffix("Response") {
        let item = message.fields().find_map(|f| match f.kind() {
            Kind::Message(m) if f.is_list() => Some(m.name().to_owned()),
            _ => None,
        });
        match (rest.starts_with("List"), item) {
            (true, Some(item)) => format!("{item}PageJson"),
            _ => {
                let split = rest[1..]
                    .find(|c: char| c.is_ascii_uppercase())
                    .map_or(rest.len(), |i| i + 1);
                let (verb, object) = rest.split_at(split);
                let past = if verb.ends_with('e') { "d" } else { "ed" };
                format!("{verb}{past}{object}Json")
            }
        }
    } else if let Some(call) = name.strip_suffix("Request") {
        format!("{call}Json")
    } else {
        format!("{name}Json")
    };
    kept(rule)
}

fn kept(name: String) -> String {
    KEPT_NAMES
        .iter()
        .find(|(rule, _)| *rule == name)
        .map_or(name, |(_, kept)| (*kept).to_owned())
}

/// The schema of a message as the gateway writes it (see
/// [`schema_name`]); the messages it holds are added too.
fn message_schema(message: &MessageDescriptor, schemas: &mut Schemas) -> String {
    let name = schema_name(message);
    if schemas.contains_key(&name) {
        return name;
    }
    // Taken before its fields, which may refer to it.
    schemas.insert(name.clone(), Value::Null);
    let (text, example) = split_example(&text_of(message.parent_file(), message.path()));
    let oneofs: Vec<OneofDescriptor> = message.oneofs().collect();
    let mut schema =
        if oneofs.len() == 1 && message.fields().all(|f| f.containing_oneof().is_some()) {
            // A oneof alone: one object per member, with that member.
            let members: Vec<Value> = message
                .fields()
                .map(|field| {
                    let (text, _) = described(&field);
                    let mut property = field_schema(&field, &text, schemas);
                    strip_null(&mut property);
                    json!({
                        "type": "object",
                        "required": [field.name()],
                        "properties": {field.name(): property},
                    })
                })
                .collect();
            json!({ "oneOf": members })
        } else {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in message.fields() {
                let (text, _) = described(&field);
                let text = text
                    .strip_prefix("Output only.")
                    .or_else(|| text.strip_prefix("Output only;"))
                    .unwrap_or(&text)
                    .trim()
                    .to_owned();
                let mut schema = field_schema(&field, &text, schemas);
                if always_set(&field) {
                    strip_null(&mut schema);
                }
                if OMITTED_WHEN_EMPTY.contains(&field.full_name()) {
                    nullable(&mut schema);
                }
                let always = !matches!(field.kind(), Kind::Message(ref m) if !is_timestamp(m))
                    || field.is_list()
                    || always_set(&field);
                if always
                    && field.containing_oneof().is_none()
                    && !OMITTED_WHEN_EMPTY.contains(&field.full_name())
                {
                    required.push(field.name().to_owned());
                }
                properties.insert(field.name().to_owned(), schema);
            }
            let mut schema = json!({"type": "object", "properties": properties});
            if !required.is_empty() {
                schema["required"] = json!(required);
            }
            schema
        };
    put_text(&mut schema, &text);
    if let Some(example) = example {
        schema["example"] = example;
    }
    schemas.insert(name.clone(), schema);
    name
}

/// What a stream's server-sent events hold, for its description.
fn server_sent_events(
    binding: &Binding,
    output: &MessageDescriptor,
    schemas: &mut Schemas,
) -> String {
    let mut lines =
        vec!["The answer is a `text/event-stream` that does not end. Its events:".to_owned()];
    let members: Vec<FieldDescriptor> = output
        .oneofs()
        .next()
        .map(|o| o.fields().collect())
        .unwrap_or_default();
    for (index, member) in members.iter().enumerate() {
        let Kind::Message(message) = member.kind() else {
            continue;
        };
        let schema = message_schema(&message, schemas);
        let event = if index == 0 {
            "no `event:` line (an EventSource `message`)".to_owned()
        } else {
            format!("`event: {}`", member.name())
        };
        let id = binding
            .hooks
            .event_ids
            .iter()
            .find(|(m, _)| *m == member.name())
            .map(|(_, field)| format!(" `id:` is its `{field}`, and"))
            .unwrap_or_default();
        lines.push(format!(
            "- {event}:{id} `data:` is a **{schema}** as one line of JSON;"
        ));
    }
    lines.push(
        "- `event: error`, last: `data:` is an **ErrorResponse** (e.g. reason `WATCH_TOO_SLOW` with `metadata.resume_token`)."
            .to_owned(),
    );
    lines.join("\n")
}

/// The schema of one server-sent event, its fields as they come over the
/// wire.
fn stream_schema(schemas: &mut Schemas) -> String {
    let name = "SseEventJson".to_owned();
    schemas.insert(
        name.clone(),
        json!({
            "type": "object",
            "description": "One server-sent event as it comes over the wire, parsed into its fields.",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "description": "`message` (no `event:` line), or the event's name: see the operation."},
                "id": {"type": ["string", "null"], "description": "What `Last-Event-ID` resumes after."},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "description": "One line of JSON: see the operation for its schema per event."},
            },
            "example": {"event": "message", "id": "42",
                        "data": "{\"sequence\":42,\"kind\":\"allocation.created\",\"...\":\"...\"}"},
        }),
    );
    name
}

/// Whether a response's message field is never null ("Always set.").
pub fn always_set(field: &FieldDescriptor) -> bool {
    static ALWAYS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    ALWAYS
        .get_or_init(|| {
            super::bindings::pool()
                .all_messages()
                .flat_map(|m| m.fields().collect::<Vec<_>>())
                .filter(|f| text_of(f.parent_file(), f.path()).starts_with("Always set."))
                .map(|f| f.full_name().to_owned())
                .collect()
        })
        .contains(field.full_name())
}

fn is_timestamp(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.protobuf.Timestamp"
}

fn field_schema(field: &FieldDescriptor, text: &str, schemas: &mut Schemas) -> Value {
    let mut schema = scalar_schema(field, text, schemas);
    if field.is_list() {
        schema = json!({"type": "array", "items": schema});
    }
    put_text(&mut schema, text);
    schema
}

/// A single value's schema; a message other than a timestamp by reference,
/// and nullable (the gateway writes an absent one as `null`).
fn scalar_schema(field: &FieldDescriptor, text: &str, schemas: &mut Schemas) -> Value {
    let integer = |format: &str| {
        let mut schema = json!({"type": "integer", "format": format});
        if text.contains("Not negative.") {
            schema["minimum"] = json!(0);
        }
        schema
    };
    match field.kind() {
        Kind::String if text.contains("YYYY-MM-DD") => json!({"type": "string", "format": "date"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer("int32"),
        Kind::Uint32 | Kind::Fixed32 => integer("uint32"),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => integer("int64"),
        Kind::Uint64 | Kind::Fixed64 => integer("uint64"),
        Kind::Float | Kind::Double => json!({"type": "number"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) => json!({"type": "string",
            "enum": e.values().map(|v| v.name().to_owned()).collect::<Vec<_>>()}),
        Kind::Message(m) if is_timestamp(&m) => json!({"type": "string", "format": "date-time"}),
        Kind::Message(m) if field.is_list() => reference(&message_schema(&m, schemas)),
        Kind::Message(m) => {
            json!({"oneOf": [reference(&message_schema(&m, schemas)), {"type": "null"}]})
        }
    }
}

fn nullable(schema: &mut Value) {
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        schema["type"] = json!([kind, "null"]);
    }
}

fn strip_null(schema: &mut Value) {
    if let Some(Value::Array(options)) = schema.get("oneOf")
        && let Some(first) = options.first()
    {
        let first = first.clone();
        let description = schema.get("description").cloned();
        *schema = first;
        if let Some(description) = description {
            schema["description"] = description;
        }
    }
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn put(object: &mut Value, key: &str, text: &str) {
    if !text.is_empty() {
        object[key] = json!(text);
    }
}

fn put_text(object: &mut Value, text: &str) {
    put(object, "description", text);
}

/// A field by path from `message`, its last part.
fn last_field(message: &MessageDescriptor, path: &str) -> FieldDescriptor {
    field_path(message, path)
        .pop()
        .expect("a field path names a field")
}

/// A field's description and example.
fn described(field: &FieldDescriptor) -> (String, Option<Value>) {
    split_example(&text_of(field.parent_file(), field.path()))
}

/// The leading comment at `path` in `file`, as one text.
pub fn text_of(file: prost_reflect::FileDescriptor, path: &[i32]) -> String {
    let comment = file
        .file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.clone())
        .unwrap_or_default();
    // One space after each comment's `//`; paragraphs kept.
    comment
        .lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// A comment's text without its "Example:" paragraph, and the example.
fn split_example(text: &str) -> (String, Option<Value>) {
    let at = if text.starts_with("Example:") {
        Some(0)
    } else {
        text.find("\nExample:").map(|at| at + 1)
    };
    let Some(at) = at else {
        return (text.to_owned(), None);
    };
    let example = text[at + "Example:".len()..].trim();
    let value = serde_json::from_str(example)
        .unwrap_or_else(|e| panic!("the example {example:?} is not JSON: {e}"));
    (text[..at].trim().to_owned(), Some(value))
}

/// The first sentence (or line) as the summary, the rest as the
/// description.
fn summary(text: &str) -> (String, String) {
    let (text, _) = split_example(text);
    let text = text.replace('\n', " ");
    match text.find(". ") {
        Some(at) => (
            text[..=at].trim().to_owned(),
            text[at + 1..].trim().to_owned(),
        ),
        None => (text.trim().to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_paragraph_is_the_example_and_not_the_description() {
        assert_eq!(
            split_example("The employee's id.\nExample: \"emp-00042\""),
            ("The employee's id.".to_owned(), Some(json!("emp-00042")))
        );
        assert_eq!(
            split_example("Example: {\"a\": 1}"),
            (String::new(), Some(json!({"a": 1})))
        );
        assert_eq!(
            split_example("No example."),
            ("No example.".to_owned(), None)
        );
    }

    #[test]
    fn the_first_sentence_is_the_summary() {
        assert_eq!(
            summary("Books a vehicle.\nThe driver is the vehicle's. With a key it is idempotent."),
            (
                "Books a vehicle.".to_owned(),
                "The driver is the vehicle's. With a key it is idempotent.".to_owned()
            )
        );
    }
}
