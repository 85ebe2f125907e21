//! The OpenAPI document, Swagger UI and ReDoc, and that the document and
//! the router describe the same API.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, spawn_app, spawn_app_with};

/// The REST API the gateway is meant to serve, method and path.
const API: [(&str, &str); 32] = [
    ("post", "/api/allocations"),
    ("get", "/api/allocations/{id}"),
    ("put", "/api/allocations/{id}"),
    ("delete", "/api/allocations/{id}"),
    ("get", "/api/allocations/history"),
    ("get", "/api/employees"),
    ("get", "/api/employees/{id}"),
    ("get", "/api/vehicles"),
    ("get", "/api/vehicles/{id}"),
    ("get", "/api/vehicles/available"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/api/employees"),
    ("patch", "/api/employees/{id}"),
    ("post", "/api/employees/{id}:deactivate"),
    ("post", "/api/employees/{id}:reactivate"),
    ("post", "/api/employees/{id}:erase"),
    ("get", "/api/drivers"),
    ("post", "/api/drivers"),
    ("get", "/api/drivers/{id}"),
    ("patch", "/api/drivers/{id}"),
    ("post", "/api/drivers/{id}:deactivate"),
    ("post", "/api/vehicles"),
    ("patch", "/api/vehicles/{id}"),
    ("post", "/api/vehicles/{id}:retire"),
    ("post", "/api/vehicles/{id}:reactivate"),
    ("put", "/api/vehicles/{id}/driver"),
    ("get", "/api/vehicles/{id}/blocks"),
    ("post", "/api/vehicles/{id}/blocks"),
    ("delete", "/api/vehicles/{id}/blocks/{block_id}"),
    ("get", "/api/events"),
    ("get", "/api/events/stream"),
];

fn operations(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn the_document_and_the_router_describe_the_same_operations() {
    let app = spawn_app().await;
    let document = app.openapi().await;
    let documented = operations(&document);
    let expected: BTreeSet<_> = API
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    assert_eq!(
        documented,
        operations(&serde_json::to_value(vehicle_allocation::gateway::openapi()).unwrap()),
        "the served document is the library's"
    );

    // Every documented operation is routed: none falls through to the
    // gateway's "no such path" or "method not allowed" answers.
    for (method, path) in &documented {
        let url = app.url(&path.replace("{id}", "probe-id"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), &url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        // A stream does not end: its answer is in the head.
        if response
            .headers()
            .get("content-type")
            .is_some_and(|t| t == "text/event-stream")
        {
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let reason = body["error"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason != "NO_SUCH_PATH" && reason != "METHOD_NOT_ALLOWED",
            "{method} {path} is documented but not routed ({status})"
        );
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_error_shape_and_examples() {
    let app = spawn_app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let schemas = &document["components"]["schemas"];
    for schema in [
        "ErrorResponse",
        "ErrorBody",
        "FieldViolationBody",
        "AllocationJson",
        "NewAllocationJson",
    ] {
        assert!(schemas[schema].is_object(), "{schema} missing");
    }
    assert!(
        schemas["ErrorResponse"]["example"].is_object(),
        "the error shape has an example"
    );
    assert!(schemas["NewAllocationJson"]["example"].is_object());
    let required = schemas["NewAllocationJson"]["required"].as_array().unwrap();
    assert_eq!(required.len(), 3, "{required:?}");

    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            if path.starts_with("/api/") {
                for code in ["401", "403", "429", "500", "503", "504"] {
                    assert!(
                        responses.contains_key(code),
                        "{method} {path} documents {code}"
                    );
                }
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{"bearerAuth": []}, {"apiKey": []}]),
                    "{method} {path} takes a token or an API key"
                );
            } else {
                assert!(
                    operation.get("security").is_none(),
                    "{method} {path} is open"
                );
            }
            for (code, response) in responses {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{method} {path} {code} documents x-request-id"
                );
                if code.starts_with('4') || (code.starts_with('5') && path != "/readyz") {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorResponse",
                        "{method} {path} {code}"
                    );
                }
            }
        }
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["bearerAuth"]["bearerFormat"], "JWT");
    assert_eq!(schemes["apiKey"]["type"], "apiKey");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["apiKey"]["name"], "x-api-key");
    let create = &document["paths"]["/api/allocations"]["post"];
    let created = &create["responses"]["201"]["headers"];
    assert!(created["Location"].is_object() && created["ETag"].is_object());
    let params: Vec<_> = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"Idempotency-Key"), "{params:?}");
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_and_redoc_renders_the_document() {
    let app = spawn_app().await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no assets from the web: {html}");
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.bytes().await.unwrap().len() > 100_000);
    let config = app.get("/docs/swagger-initializer.js").await;
    assert!(config.text().await.unwrap().contains("/openapi.json"));

    let redoc = app.get("/redoc").await;
    assert_eq!(redoc.status(), StatusCode::OK);
    let html = redoc.text().await.unwrap();
    assert!(html.contains("Redoc.init('/openapi.json'"), "{html}");
    assert!(
        html.contains("href=\"/docs\""),
        "a way out when ReDoc cannot load: {html}"
    );
    let script = app.get("/redoc/redoc.standalone.js").await;
    if vehicle_allocation::gateway::REDOC_EMBEDDED {
        assert!(!html.contains("https://"), "no assets from the web: {html}");
        assert_eq!(script.status(), StatusCode::OK);
        assert!(script.bytes().await.unwrap().len() > 100_000);
        let licence = app.get("/redoc/redoc.standalone.js.LICENSE.txt").await;
        assert_eq!(licence.status(), StatusCode::OK);
    } else {
        eprintln!("SKIPPED: the embedded ReDoc bundle (this build had no npm)");
        assert_eq!(script.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn every_error_status_lists_its_reasons_from_the_catalogue_each_with_its_own_example() {
    use vehicle_allocation::reasons;
    let app = spawn_app().await;
    let document = app.openapi().await;
    let mut examples_seen = BTreeSet::new();
    let every_call = vehicle_allocation::gateway::operation_reasons("no such operation");
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            let documented = vehicle_allocation::gateway::operation_reasons(id);
            // An operation the reasons table lacks still lists the reasons
            // of every call: each must list some of its own.
            assert!(
                documented.iter().any(|r| !every_call.contains(r)),
                "{method} {path}: {id} is in the table of reasons"
            );
            for reason in &documented {
                let status = reason.http().as_u16().to_string();
                let response = &operation["responses"][&status];
                let description = response["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(&format!("`{}`", reason.name)),
                    "{method} {path} {status} describes {}",
                    reason.name
                );
                let example =
                    &response["content"]["application/json"]["examples"][reason.name]["value"];
                assert_eq!(example["error"]["reason"], reason.name, "{id}");
                assert_eq!(example["error"]["code"], reason.http().as_u16(), "{id}");
                examples_seen.insert(example["error"]["reason"].as_str().unwrap().to_owned());
            }
        }
    }
    // Creating documents the 404 of a reused key whose booking is gone.
    let not_found = &document["paths"]["/api/allocations"]["post"]["responses"]["404"];
    for reason in [
        "ALLOCATION_NOT_FOUND",
        "EMPLOYEE_NOT_FOUND",
        "VEHICLE_NOT_FOUND",
    ] {
        assert!(
            not_found["content"]["application/json"]["examples"][reason].is_object(),
            "{reason}"
        );
    }
    assert!(
        not_found["description"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{not_found}"
    );
    // Every reason the REST API can answer with is documented, with its
    // example, on some operation; these it never gives to an operation
    // (gRPC's own, or the gateway's to a request that names none).
    let not_rest = [
        "MALFORMED_REQUEST",
        "MESSAGE_TOO_LARGE",
        "UNKNOWN_FIELD_PATH",
        "IMPORT_RUNNING",
        "METHOD_NOT_ALLOWED",
        "BAD_REQUEST",
    ];
    let answered: BTreeSet<String> = reasons::ALL
        .iter()
        .map(|r| r.name)
        .filter(|name| !not_rest.contains(name))
        .map(str::to_owned)
        .collect();
    assert_eq!(examples_seen, answered);
}

#[tokio::test]
async fn example_dates_are_a_week_ahead_of_the_day_the_document_is_served() {
    let app = spawn_app().await;
    let document = app.openapi().await;
    let example = &document["components"]["schemas"]["NewAllocationJson"]["example"];
    assert_eq!(example["allocation_date"], app.day(7));
    // Tomorrow's document books a day later.
    app.clock.advance(chrono::Duration::days(1));
    let document = app.openapi().await;
    let example = &document["components"]["schemas"]["NewAllocationJson"]["example"];
    assert_eq!(example["allocation_date"], app.day(7));
    assert!(!document.to_string().contains("2099-01-01"));
}

/// An operation's example request body: its own, or its schema's.
fn example_body(document: &Value, operation: &Value) -> Option<Value> {
    let content = &operation["requestBody"]["content"]["application/json"];
    if !content["example"].is_null() {
        return Some(content["example"].clone());
    }
    let name = content["schema"]["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    let example = &document["components"]["schemas"][name]["example"];
    (!example.is_null()).then(|| example.clone())
}

/// The operations with an example body, in the order they are sent: the
/// driver the vehicle examples name is added first, and a booking before
/// the example that changes one.
const EXAMPLES_IN_ORDER: [&str; 10] = [
    "createAllocation",
    "updateAllocation",
    "createEmployee",
    "updateEmployee",
    "createDriver",
    "updateDriver",
    "assignDriver",
    "createVehicle",
    "updateVehicle",
    "createVehicleBlock",
];

#[tokio::test]
async fn every_example_request_succeeds_against_the_demo_data_as_served() {
    let app = spawn_app_with(AppOptions {
        fleet: false,
        demo: true,
        ..AppOptions::default()
    })
    .await;
    let document = app.openapi().await;
    let mut operations = std::collections::BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(body) = example_body(&document, operation) {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                operations.insert(id, (method.clone(), path.clone(), operation.clone(), body));
            }
        }
    }
    let ids: BTreeSet<_> = operations.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from(EXAMPLES_IN_ORDER),
        "every example is sent"
    );

    let mut booking = String::new();
    for id in EXAMPLES_IN_ORDER {
        let (method, path, operation, body) = &operations[id];
        // Path parameters from their examples; a booking's id from the
        // booking the first example made.
        let mut url = path.clone();
        for parameter in operation["parameters"].as_array().unwrap() {
            if parameter["in"] != "path" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap();
            let value = match parameter["example"].as_str() {
                Some(example) => example.to_owned(),
                None if path.starts_with("/api/allocations/") => booking.clone(),
                None => panic!("{id}: path parameter {name} has no example"),
            };
            url = url.replace(&format!("{{{name}}}"), &value);
        }
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .http
            .request(method, app.url(&url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{id} {url} {body}: {status} {answer}");
        if id == "createAllocation" {
            booking = answer["id"].as_str().unwrap().to_owned();
        }
        if id == "assignDriver" {
            // The vehicle examples name one new driver: undo the handover
            // so that adding a vehicle with that driver is tried on the
            // demo data too.
            let demo_driver =
                json!({"driver_id": "drv-0007", "effective_date": body["effective_date"]});
            let response = app
                .http
                .put(app.url(&url))
                .json(&demo_driver)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap()
            );
        }
    }
}

#[tokio::test]
async fn example_dates_count_from_the_services_today() {
    let app = spawn_app().await;
    let document = app.openapi().await;
    let schemas = &document["components"]["schemas"];
    let error = &schemas["ErrorResponse"]["example"]["error"];
    assert_eq!(error["metadata"]["allocation_date"], app.day(7));
    assert!(error["message"].as_str().unwrap().contains(&app.day(7)));
    let block = &schemas["NewBlockJson"]["example"];
    assert_eq!(block["start_date"], app.day(30));
    assert_eq!(block["end_date"], app.day(36), "a week");
    assert_eq!(
        schemas["DriverAssignmentJson"]["example"]["effective_date"],
        app.day(30)
    );
    let created = schemas["AllocationJson"]["example"]["create_time"]
        .as_str()
        .unwrap();
    assert!(created.starts_with(&app.day(0)), "{created}");
    let text = document.to_string();
    assert!(!text.contains("2099-"), "no fixed dates");
}

#[tokio::test]
async fn the_stream_documents_the_parameters_it_takes_and_its_events_as_sse() {
    let app = spawn_app().await;
    let document = app.openapi().await;
    let names = |operation: &Value| -> BTreeSet<String> {
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let filters = [
        "resource",
        "employee_id",
        "vehicle_id",
        "actor",
        "kind",
        "start_time",
        "end_time",
        "x-request-id",
    ];
    let stream = &document["paths"]["/api/events/stream"]["get"];
    let expected: BTreeSet<String> = filters
        .iter()
        .chain(&[
            "after_sequence",
            "resume_token",
            "from_now",
            "Last-Event-ID",
        ])
        .map(|n| (*n).to_owned())
        .collect();
    assert_eq!(names(stream), expected);
    let list = &document["paths"]["/api/events"]["get"];
    let expected: BTreeSet<String> = filters
        .iter()
        .chain(&["page_size", "page_token"])
        .map(|n| (*n).to_owned())
        .collect();
    assert_eq!(names(list), expected);

    // The body schema is of one SSE event (its fields), not of the JSON in
    // its data, which the description names.
    let ok = &stream["responses"]["200"]["content"];
    assert_eq!(ok.as_object().unwrap().len(), 1, "{ok}");
    let schema = &ok["text/event-stream"]["schema"]["$ref"];
    let name = schema.as_str().unwrap().rsplit('/').next().unwrap();
    let event = &document["components"]["schemas"][name];
    let properties: BTreeSet<_> = event["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        properties,
        BTreeSet::from(["data", "event", "id"].map(String::from))
    );
    assert_eq!(event["properties"]["data"]["type"], "string");
    let description = stream["description"].as_str().unwrap();
    assert!(
        description.contains("EventJson") && description.contains("event: heartbeat"),
        "{description}"
    );
}

/// A REST binding's method and path, with its variables' names left out
/// (the OpenAPI document names them after the resource, the proto after
/// the request's field).
fn route(method: &str, path: &str) -> (String, String) {
    let mut shape = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                shape.push_str("{}");
            }
            '}' => inside = false,
            c if !inside => shape.push(c),
            _ => {}
        }
    }
    (method.to_uppercase(), shape)
}

/// Every REST binding the proto declares with `google.api.http`, as the
/// gateway reads them (their fields are checked in `gateway::bindings`),
/// and the RPCs that declare none.
fn declared_bindings() -> (
    std::collections::BTreeMap<(String, String), String>,
    Vec<String>,
) {
    let mut bindings = std::collections::BTreeMap::new();
    for binding in vehicle_allocation::gateway::bindings::bindings() {
        assert!(
            vehicle_allocation::reasons::of_call(&binding.call).is_some(),
            "{} has a REST form, so reasons::CALLS lists what it answers with",
            binding.call
        );
        let rpc = binding.call.rsplit('/').next().unwrap().to_owned();
        let previous = bindings.insert(route(binding.method, &binding.path), rpc);
        assert_eq!(
            previous, None,
            "{} {} is bound twice",
            binding.method, binding.path
        );
    }
    let pool =
        prost_reflect::DescriptorPool::decode(vehicle_allocation::proto::FILE_DESCRIPTOR_SET)
            .unwrap();
    let without = pool
        .services()
        .filter(|s| s.package_name() == "vehicle_allocation.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .filter(|m| !bindings.values().any(|rpc| rpc == m.name()))
        .map(|m| m.full_name().to_owned())
        .collect();
    (bindings, without)
}

#[tokio::test]
async fn every_rest_operation_is_the_binding_its_rpc_declares_in_the_proto() {
    let (declared, without) = declared_bindings();
    assert_eq!(
        without,
        ["vehicle_allocation.v1.FleetService.ImportFleet"],
        "every other RPC has a REST form"
    );
    let openapi = spawn_app().await.openapi().await;
    let mut served = std::collections::BTreeMap::new();
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue; // the probes answer for the process, not an RPC
        }
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            // The operation is its RPC, named in lower camel case; the SSE
            // stream is WatchEvents.
            let rpc = match id {
                "streamEvents" => "WatchEvents".to_owned(),
                id => id[..1].to_uppercase() + &id[1..],
            };
            served.insert(route(method, path), rpc);
        }
    }
    assert_eq!(declared, served, "the proto's bindings and the served API");
}
