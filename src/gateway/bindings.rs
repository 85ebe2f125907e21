//! Each call's REST form, read once from the proto's `google.api.http`
//! bindings, with the few hooks per method the REST contract adds to them
//! (fields sent as headers, an update's mask taken from its body, the
//! status of a create or a delete, a stream as server-sent events).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

/// What the REST contract adds to a call's binding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Request fields filled from request headers instead of the query
    /// string or the body.
    pub headers: &'static [(&'static str, &'static str)],
    /// Query parameters also accepted as a header.
    pub header_alternatives: &'static [(&'static str, &'static str)],
    /// The `update_mask` names the body's fields that are present.
    pub mask_from_body: bool,
    /// Answered `201 Created` with `Location` (and `ETag`).
    pub created: bool,
    /// Answered `204 No Content`.
    pub deleted: bool,
    /// A server stream, sent as server-sent events: one per message, named
    /// by the member of its oneof that is set (the first member unnamed,
    /// an EventSource `message`), with the `id:` of each member taken from
    /// the field given here.
    pub stream: bool,
    pub event_ids: &'static [(&'static str, &'static str)],
    /// The OpenAPI operation id, when it is not the RPC's name in lower
    /// camel case.
    pub operation_id: Option<&'static str>,
}

const NONE: Hooks = Hooks {
    headers: &[],
    header_alternatives: &[],
    mask_from_body: false,
    created: false,
    deleted: false,
    stream: false,
    event_ids: &[],
    operation_id: None,
};

/// The hooks of each call that has any, by RPC name.
fn hooks(rpc: &str) -> Hooks {
    const IF_MATCH: &str = "If-Match";
    let created = Hooks {
        created: true,
        ..NONE
    };
    match rpc {
        "CreateAllocation" => Hooks {
            headers: &[("request_id", "Idempotency-Key")],
            ..created
        },
        "CreateEmployee" | "CreateDriver" | "CreateVehicle" | "CreateVehicleBlock" => created,
        "UpdateAllocation" => Hooks {
            headers: &[("allocation.etag", IF_MATCH)],
            mask_from_body: true,
            ..NONE
        },
        "UpdateEmployee" => Hooks {
            headers: &[("employee.etag", IF_MATCH)],
            mask_from_body: true,
            ..NONE
        },
        "UpdateDriver" => Hooks {
            headers: &[("driver.etag", IF_MATCH)],
            mask_from_body: true,
            ..NONE
        },
        "UpdateVehicle" => Hooks {
            headers: &[("vehicle.etag", IF_MATCH)],
            mask_from_body: true,
            ..NONE
        },
        "DeleteAllocation" => Hooks {
            headers: &[("etag", IF_MATCH)],
            deleted: true,
            ..NONE
        },
        "DeleteVehicleBlock" => Hooks {
            deleted: true,
            ..NONE
        },
        "WatchEvents" => Hooks {
            header_alternatives: &[("resume_token", "Last-Event-ID")],
            stream: true,
            // A reconnect resumes after what a heartbeat covered.
            event_ids: &[("event", "sequence"), ("heartbeat", "resume_token")],
            operation_id: Some("streamEvents"),
            ..NONE
        },
        _ => NONE,
    }
}

/// Response fields the REST contract leaves out when empty, by full name:
/// a field withheld from the caller is absent there, not empty.
pub const OMITTED_WHEN_EMPTY: &[&str] = &["vehicle_allocation.v1.Driver.license_number"];

/// One call's REST form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The call's gRPC path, e.g. `/vehicle_allocation.v1.FleetService/GetVehicle`.
    pub call: String,
    /// The OpenAPI operation id.
    pub operation_id: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path template, variables named by request fields.
    pub path: String,
    /// The request field the JSON body fills (`*`: all the others).
    pub body: Option<String>,
    /// The request fields left to the query string.
    pub query: Vec<String>,
    pub hooks: Hooks,
}

impl Binding {
    /// Whether ids come in the path.
    pub fn has_path_variables(&self) -> bool {
        self.path.contains('{')
    }

    /// The path without a custom method's verb, and the verb
    /// (`/api/vehicles/{id}:retire` → `/api/vehicles/{id}`, `retire`).
    pub fn template_and_verb(&self) -> (&str, Option<&str>) {
        match self.path.rsplit_once(':') {
            Some((head, verb)) if self.is_custom_method() => (head, Some(verb)),
            _ => (&self.path, None),
        }
    }

    /// Whether it is a custom method (`…/{id}:retire`).
    pub fn is_custom_method(&self) -> bool {
        self.path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    }
}

/// The service's descriptors, decoded once for the whole gateway.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built from proto/ decodes")
    })
}

/// Every call's REST form (more than one when it has additional
/// bindings), in the proto's order.
pub fn bindings() -> &'static [Binding] {
    static BINDINGS: OnceLock<Vec<Binding>> = OnceLock::new();
    BINDINGS.get_or_init(|| read(pool()))
}

/// The binding whose operation id is `operation_id`.
pub fn by_operation(operation_id: &str) -> Option<&'static Binding> {
    bindings().iter().find(|b| b.operation_id == operation_id)
}

fn read(pool: &DescriptorPool) -> Vec<Binding> {
    let Some(http) = pool.get_extension_by_name("google.api.http") else {
        return Vec::new();
    };
    let mut bindings = Vec::new();
    for service in pool
        .services()
        .filter(|s| s.package_name() == "vehicle_allocation.v1")
    {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let Some(rule) = rule.as_message() else {
                continue;
            };
            bindings.push(binding(&method, rule));
            // A call may have more than one REST form.
            if let Some(Value::List(more)) =
                rule.get_field_by_name("additional_bindings").as_deref()
            {
                for rule in more.iter().filter_map(Value::as_message) {
                    bindings.push(binding(&method, rule));
                }
            }
        }
    }
    bindings
}

fn binding(method: &MethodDescriptor, rule: &DynamicMessage) -> Binding {
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (verb, path) = [
        ("GET", "get"),
        ("PUT", "put"),
        ("POST", "post"),
        ("DELETE", "delete"),
        ("PATCH", "patch"),
    ]
    .into_iter()
    .map(|(verb, field)| (verb, text(field)))
    .find(|(_, path)| !path.is_empty())
    .unwrap_or(("GET", String::new()));
    let body = Some(text("body")).filter(|b| !b.is_empty());
    let hooks = hooks(method.name());
    // Top-level fields the path, the body or a header takes.
    let mut taken: Vec<String> = path
        .split('{')
        .skip(1)
        .filter_map(|v| v.split(['}', '.', '=']).next())
        .map(str::to_owned)
        .collect();
    taken.extend(body.clone());
    taken.extend(
        hooks
            .headers
            .iter()
            .filter(|(field, _)| !field.contains('.'))
            .map(|(field, _)| (*field).to_owned()),
    );
    if hooks.mask_from_body {
        taken.push("update_mask".to_owned());
    }
    let query = if body.as_deref() == Some("*") {
        Vec::new()
    } else {
        method
            .input()
            .fields()
            .map(|f| f.name().to_owned())
            .filter(|name| !taken.contains(name))
            .collect()
    };
    let name = method.name();
    let operation_id = hooks
        .operation_id
        .map(str::to_owned)
        .unwrap_or_else(|| name[..1].to_lowercase() + &name[1..]);
    Binding {
        call: format!("/{}/{}", method.parent_service().full_name(), name),
        operation_id,
        method: verb,
        path,
        body,
        query,
        hooks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(rpc: &str) -> &'static Binding {
        bindings()
            .iter()
            .find(|b| b.call.ends_with(&format!("/{rpc}")))
            .unwrap_or_else(|| panic!("{rpc} has a binding"))
    }

    #[test]
    fn every_call_with_a_rest_form_is_read_with_its_reasons_and_a_unique_operation() {
        assert_eq!(bindings().len(), 30, "every RPC but ImportFleet");
        let mut ids: Vec<_> = bindings().iter().map(|b| b.operation_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 30);
        for binding in bindings() {
            assert!(
                crate::reasons::of_call(&binding.call).is_some(),
                "{}",
                binding.call
            );
        }
        assert_eq!(
            by_operation("streamEvents").unwrap().call,
            named("WatchEvents").call
        );
        assert_eq!(
            by_operation("getVehicle").unwrap().path,
            "/api/vehicles/{id}"
        );
    }

    #[test]
    fn what_the_path_body_and_headers_do_not_take_is_left_to_the_query() {
        // Hooked to headers, or to the body's present fields.
        assert_eq!(named("CreateAllocation").query, Vec::<String>::new());
        assert_eq!(named("DeleteAllocation").query, Vec::<String>::new());
        assert_eq!(named("UpdateAllocation").query, Vec::<String>::new());
        assert_eq!(named("UpdateVehicle").query, Vec::<String>::new());
        assert_eq!(named("GetAllocation").query, Vec::<String>::new());
        assert_eq!(
            named("CreateVehicleBlock").query,
            ["cancel_conflicting_bookings"]
        );
        assert_eq!(
            named("RetireVehicle").query,
            ["cancel_conflicting_bookings"]
        );
        assert!(named("AssignDriver").query.is_empty(), "body *");
        // A header only as an alternative: still a query parameter.
        assert!(
            named("WatchEvents")
                .query
                .contains(&"resume_token".to_owned())
        );
        assert!(named("WatchEvents").hooks.stream);
        assert!(named("CreateVehicle").hooks.created);
        assert!(named("DeleteVehicleBlock").hooks.deleted);
    }

    #[test]
    fn custom_methods_and_path_variables_are_told_from_the_path() {
        assert!(named("RetireVehicle").is_custom_method());
        assert!(named("DeactivateEmployee").is_custom_method());
        assert!(!named("GetVehicle").is_custom_method());
        assert!(!named("ListVehicles").has_path_variables());
        assert!(named("DeleteVehicleBlock").has_path_variables());
    }

    /// The request message of a binding's call.
    fn input(binding: &Binding) -> prost_reflect::MessageDescriptor {
        let pool = DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET).unwrap();
        let (service, method) = binding.call[1..].split_once('/').unwrap();
        pool.get_service_by_name(service)
            .and_then(|s| s.methods().find(|m| m.name() == method))
            .unwrap()
            .input()
    }

    /// For the transcoding: each path variable names a scalar field (path)
    /// of the request, the body a field of it or `*`.
    #[test]
    fn path_variables_and_bodies_name_fields_of_the_request() {
        for binding in bindings() {
            let call = &binding.call;
            let path = &binding.path;
            for variable in path.split('{').skip(1).map(|v| &v[..v.find('}').unwrap()]) {
                let mut message = input(binding);
                let mut steps = variable.split('.').peekable();
                while let Some(step) = steps.next() {
                    let field = message
                        .get_field_by_name(step)
                        .unwrap_or_else(|| panic!("{call}: {path} names no field {variable}"));
                    assert!(!field.is_list(), "{call}: {variable} is repeated");
                    match (field.kind(), steps.peek()) {
                        (prost_reflect::Kind::Message(inner), Some(_)) => message = inner,
                        (prost_reflect::Kind::Message(_), None) => {
                            panic!("{call}: {variable} is a message")
                        }
                        (_, Some(_)) => panic!("{call}: {variable} goes through a scalar"),
                        (_, None) => {}
                    }
                }
            }
            if let Some(body) = binding.body.as_deref() {
                assert!(
                    body == "*" || input(binding).get_field_by_name(body).is_some(),
                    "{call}: body {body:?} is no field of its request"
                );
            }
        }
    }

    #[test]
    fn every_hooked_field_is_a_field_of_its_request() {
        for binding in bindings() {
            let input = input(binding);
            let hooks = binding.hooks;
            for (field, _) in hooks.headers.iter().chain(hooks.header_alternatives) {
                let mut message = input.clone();
                for (i, step) in field.split('.').enumerate() {
                    let found = message
                        .get_field_by_name(step)
                        .unwrap_or_else(|| panic!("{}: no field {field}", binding.call));
                    if i + 1 < field.split('.').count() {
                        message = found.kind().as_message().unwrap().clone();
                    }
                }
            }
            if hooks.mask_from_body {
                assert!(input.get_field_by_name("update_mask").is_some());
            }
        }
    }
}
