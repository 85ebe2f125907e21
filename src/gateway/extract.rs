//! Request extractors that answer bad input in the gateway's error shape,
//! naming the field at fault, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use super::error::ApiError;
use crate::domain::error::{ECHO_CHARS, Echo, clip};
use crate::reasons;

/// A request body that is a JSON object, as bytes: refused in the error
/// shape when it is not JSON, empty, too large, or not an object.
async fn object_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::new(
            reasons::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON, sent with Content-Type: application/json",
        ));
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(body_rejection)?;
    let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(ApiError::new(
            reasons::MISSING_BODY,
            "the request needs a JSON object as its body",
        ));
    };
    // serde would read a struct from an array too; the API takes objects.
    if *first != b'{' && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
        return Err(ApiError::invalid_field(
            reasons::INVALID_FIELD,
            "body",
            "body: the request body must be a JSON object",
        ));
    }
    Ok(bytes)
}

/// A request body that is a JSON object (see [`object_bytes`]), its
/// top-level names each once.
pub async fn json_object(
    request: Request,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = object_bytes(request, &()).await?;
    match serde_json::from_slice::<Unique>(&bytes) {
        Ok(Unique(object)) => Ok(object),
        Err(error) if error.is_data() => {
            let message = error.to_string();
            let name = message
                .strip_prefix("duplicate field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("body");
            Err(ApiError::invalid_field(
                reasons::INVALID_FIELD,
                &Echo(name).to_string(),
                format!("{}: sent more than once", Echo(name)),
            ))
        }
        Err(error) => Err(malformed_json(&error)),
    }
}

/// A JSON object whose names are unique: one sent twice is ambiguous, and
/// refused rather than read as its last value.
struct Unique(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Unique;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Unique, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if object.contains_key(&name) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate field `{name}`"
                        )));
                    }
                    object.insert(name, value);
                }
                Ok(Unique(object))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn malformed_json(error: &serde_json::Error) -> ApiError {
    ApiError::new(
        reasons::MALFORMED_JSON,
        format!("the request body is not valid JSON: {error}"),
    )
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            reasons::BODY_TOO_LARGE,
            format!(
                "the request body is larger than {} KiB",
                crate::server::MAX_BODY_BYTES / 1024
            ),
        )
    } else {
        ApiError::new(
            reasons::UNREADABLE_BODY,
            "the request body could not be read",
        )
    }
}

/// A type or shape error at `path` ("." when the whole value is wrong).
pub(super) fn field_error(path: &str, message: &str, whole: &str) -> ApiError {
    // serde repeats the caller's value and names; cut them short.
    let message = clip(message, 4 * ECHO_CHARS);
    let (reason, field) = match unknown_field(&message) {
        Some(name) => (reasons::UNKNOWN_FIELD, Echo(&name).to_string()),
        None if path == "." || path.is_empty() => (reasons::INVALID_FIELD, whole.to_owned()),
        None => (reasons::INVALID_FIELD, path.to_owned()),
    };
    ApiError::invalid_field(reason, &field, format!("{field}: {message}"))
}

/// The name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}
