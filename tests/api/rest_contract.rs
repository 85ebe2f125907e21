//! The document written from the proto against the one written by hand
//! before it (`tests/fixtures/openapi-before.json`): the same operations,
//! parameters, bodies, fields and statuses. What may differ is listed:
//! descriptions (now the proto's comments), schema names, and what was
//! added.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

const BEFORE: &str = include_str!("../fixtures/openapi-before.json");

/// A schema with its references resolved and its prose left out: what a
/// client's code depends on.
fn shape(document: &Value, schema: &Value, seen: &mut Vec<String>) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        if seen.iter().any(|s| s == name) {
            return json!({"recursive": true});
        }
        seen.push(name.to_owned());
        let resolved = shape(document, &document["components"]["schemas"][name], seen);
        seen.pop();
        return resolved;
    }
    let mut out = Map::new();
    for key in ["type", "format", "minimum", "enum", "additionalProperties"] {
        if let Some(value) = schema.get(key) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(required) = schema["required"].as_array() {
        let set: BTreeSet<&str> = required.iter().filter_map(Value::as_str).collect();
        out.insert("required".into(), json!(set));
    }
    if let Some(properties) = schema["properties"].as_object() {
        let fields: Map<String, Value> = properties
            .iter()
            .map(|(name, field)| (name.clone(), shape(document, field, seen)))
            .collect();
        out.insert("properties".into(), Value::Object(fields));
    }
    if let Some(items) = schema.get("items") {
        out.insert("items".into(), shape(document, items, seen));
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let options: Vec<Value> = options.iter().map(|o| shape(document, o, seen)).collect();
        out.insert("oneOf".into(), json!(options));
    }
    Value::Object(out)
}

/// Where two shapes first differ, and how.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (p, q) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                difference(p, q, &format!("{at}.{k}"))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| difference(p, q, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a} became {b}")),
    }
}

fn operations(document: &Value) -> BTreeMap<(String, String), Value> {
    let mut found = BTreeMap::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.insert((method.clone(), path.clone()), operation.clone());
        }
    }
    found
}

fn parameters(operation: &Value) -> BTreeMap<(String, String), Value> {
    operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let key = (
                p["in"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            );
            (key, p.clone())
        })
        .collect()
}

fn body_schema<'a>(document: &'a Value, operation: &Value) -> Option<(String, &'a Value)> {
    let reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()?
        .trim_start_matches("#/components/schemas/")
        .to_owned();
    let schema = &document["components"]["schemas"][&reference];
    Some((reference, schema))
}

#[test]
fn the_generated_document_keeps_every_operation_parameter_field_and_status() {
    let before: Value = serde_json::from_str(BEFORE).unwrap();
    let now = serde_json::to_value(vehicle_allocation::gateway::openapi()).unwrap();
    let (old, new) = (operations(&before), operations(&now));
    // What would break a client: each is a failure.
    let mut broken = Vec::new();
    // What a client sees differently and keeps working with.
    let mut differences = Vec::new();
    let old_keys: BTreeSet<_> = old.keys().collect();
    let new_keys: BTreeSet<_> = new.keys().collect();
    assert_eq!(old_keys, new_keys, "the same operations");
    let mut renamed = BTreeSet::new();
    for (key, was) in &old {
        let is = &new[key];
        let at = format!("{} {}", key.0, key.1);
        for field in ["operationId", "tags"] {
            if was[field] != is[field] {
                broken.push(format!("{at}: {field} {} became {}", was[field], is[field]));
            }
        }
        if (&was["summary"], &was["description"]) != (&is["summary"], &is["description"]) {
            differences.push(format!("{at}: summary and description"));
        }
        let (was_params, is_params) = (parameters(was), parameters(is));
        for (name, parameter) in &was_params {
            let Some(kept) = is_params.get(name) else {
                broken.push(format!("{at}: parameter {name:?} is gone"));
                continue;
            };
            if parameter["required"] != kept["required"] {
                broken.push(format!("{at}: parameter {name:?} required changed"));
            }
            let (a, b) = (
                shape(&before, &parameter["schema"], &mut Vec::new()),
                shape(&now, &kept["schema"], &mut Vec::new()),
            );
            if let Some(how) = difference(&a, &b, "schema") {
                broken.push(format!("{at}: parameter {name:?} {how}"));
            }
            if parameter.get("example").is_some() && kept.get("example").is_none() {
                broken.push(format!("{at}: parameter {name:?} lost its example"));
            }
            if parameter["description"] != kept["description"] {
                differences.push(format!("{at}: parameter {name:?} description"));
            }
        }
        for name in is_params.keys().filter(|n| !was_params.contains_key(*n)) {
            differences.push(format!("{at}: parameter {name:?} added"));
        }
        match (body_schema(&before, was), body_schema(&now, is)) {
            (None, None) => {}
            (Some((a_name, a)), Some((b_name, b))) => {
                let (x, y) = (
                    shape(&before, a, &mut Vec::new()),
                    shape(&now, b, &mut Vec::new()),
                );
                if let Some(how) = difference(&x, &y, "body") {
                    broken.push(format!("{at}: {how}"));
                }
                if a.get("example").is_some() && a.get("example") != b.get("example") {
                    broken.push(format!("{at}: body example changed"));
                }
                if a_name != b_name {
                    renamed.insert(format!("{a_name} -> {b_name}"));
                }
            }
            (a, b) => broken.push(format!("{at}: body {a:?} became {b:?}")),
        }
        let statuses = |o: &Value| -> BTreeSet<String> {
            o["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        if statuses(was) != statuses(is) {
            broken.push(format!(
                "{at}: statuses {:?} became {:?}",
                statuses(was),
                statuses(is)
            ));
            continue;
        }
        for status in statuses(was) {
            let (a, b) = (&was["responses"][&status], &is["responses"][&status]);
            let headers = |r: &Value| -> BTreeSet<String> {
                r["headers"]
                    .as_object()
                    .map(|h| h.keys().cloned().collect())
                    .unwrap_or_default()
            };
            if !headers(a).is_subset(&headers(b)) {
                broken.push(format!(
                    "{at} {status}: headers {:?} became {:?}",
                    headers(a),
                    headers(b)
                ));
            }
            let content = |r: &Value| -> BTreeSet<String> {
                r["content"]
                    .as_object()
                    .map(|c| c.keys().cloned().collect())
                    .unwrap_or_default()
            };
            if content(a) != content(b) {
                broken.push(format!(
                    "{at} {status}: content {:?} became {:?}",
                    content(a),
                    content(b)
                ));
                continue;
            }
            for media in content(a) {
                let (x, y) = (
                    &a["content"][&media]["schema"],
                    &b["content"][&media]["schema"],
                );
                // The error responses are the catalogue's, compared elsewhere.
                if status.starts_with(['4', '5']) && x == y {
                    continue;
                }
                let (sx, sy) = (
                    shape(&before, x, &mut Vec::new()),
                    shape(&now, y, &mut Vec::new()),
                );
                if let Some(how) = difference(&sx, &sy, "response") {
                    broken.push(format!("{at} {status}: {how}"));
                }
                if let (Some(p), Some(q)) = (x["$ref"].as_str(), y["$ref"].as_str())
                    && p != q
                {
                    renamed.insert(format!(
                        "{} -> {}",
                        p.trim_start_matches("#/components/schemas/"),
                        q.trim_start_matches("#/components/schemas/")
                    ));
                }
            }
            if a["description"] != b["description"] {
                differences.push(format!("{at} {status}: description"));
            }
        }
    }
    for rename in &renamed {
        differences.push(format!("schema renamed: {rename}"));
    }
    eprintln!(
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
