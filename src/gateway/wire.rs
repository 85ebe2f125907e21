//! The contract's JSON written straight from a message's protobuf bytes,
//! guided by its descriptor: one pass over the bytes, no message built in
//! between (decoding into a `DynamicMessage` first cost more than the rest
//! of a REST read; see docs/performance.md).
//!
//! The JSON: proto field names, in declaration order; every field written,
//! defaults too; an absent message `null` (an "Always set." one `{}`); of a
//! oneof only the member that is set; 64-bit integers as numbers; enums by
//! name; timestamps in RFC 3339 with milliseconds (absent: `""`); a field
//! in [`OMITTED_WHEN_EMPTY`] left out when empty.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};

use super::bindings::OMITTED_WHEN_EMPTY;

/// Bytes that are not the message their descriptor says.
#[derive(Debug, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct Malformed(&'static str);

/// How each message is written, by full name.
pub struct Plans {
    plans: Vec<Plan>,
    by_name: HashMap<String, usize>,
}

struct Plan {
    fields: Vec<FieldPlan>,
}

struct FieldPlan {
    number: u32,
    name: String,
    /// `"name":`, written once.
    key: Vec<u8>,
    shape: Shape,
    list: bool,
    oneof: bool,
    omit_empty: bool,
    always: bool,
}

enum Shape {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Float,
    Double,
    Enum(EnumDescriptor),
    Timestamp,
    Message(usize),
}

/// A value as it is on the wire.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64(u64),
    Len(&'a [u8]),
}

/// The plans of every message in the service's descriptor set.
pub fn plans() -> &'static Plans {
    static PLANS: OnceLock<Plans> = OnceLock::new();
    PLANS.get_or_init(|| Plans::of(super::bindings::pool()))
}

impl Plans {
    fn of(pool: &DescriptorPool) -> Self {
        let messages: Vec<MessageDescriptor> = pool.all_messages().collect();
        let by_name: HashMap<String, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.full_name().to_owned(), i))
            .collect();
        let plans = messages
            .iter()
            .map(|message| Plan {
                fields: message
                    .fields()
                    .map(|field| FieldPlan {
                        number: field.number(),
                        name: field.name().to_owned(),
                        key: {
                            let mut key = Vec::new();
                            write_str(&mut key, field.name());
                            key.push(b':');
                            key
                        },
                        shape: shape(&field, &by_name),
                        list: field.is_list() || field.is_map(),
                        oneof: field.containing_oneof().is_some(),
                        omit_empty: OMITTED_WHEN_EMPTY.contains(&field.full_name()),
                        always: super::openapi::always_set(&field),
                    })
                    .collect(),
            })
            .collect();
        Self { plans, by_name }
    }

    fn plan(&self, message: &MessageDescriptor) -> &Plan {
        &self.plans[self.by_name[message.full_name()]]
    }

    /// `bytes`, a `message`, as JSON appended to `out`.
    pub fn write(
        &self,
        message: &MessageDescriptor,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        self.write_plan(self.plan(message), &[bytes], out)
    }

    /// The text of the top-level field `name` of `bytes` (a string, or an
    /// integer written out), if it is set and not empty.
    pub fn text(&self, message: &MessageDescriptor, bytes: &[u8], name: &str) -> Option<String> {
        let plan = self.plan(message);
        let index = plan.fields.iter().position(|f| f.name == name)?;
        let values = parse(plan, &[bytes]).ok()?;
        let raw = values.iter().rev().find(|(i, _)| *i == index)?.1;
        let text = match (&plan.fields[index].shape, raw) {
            (Shape::String, Raw::Len(b)) => std::str::from_utf8(b).ok()?.to_owned(),
            (Shape::Int64, Raw::Varint(v)) => (v as i64).to_string(),
            (Shape::Uint64, Raw::Varint(v)) => v.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then_some(text)
    }

    /// The bytes of the top-level message field `name`, if set.
    pub fn field_bytes<'a>(
        &self,
        message: &MessageDescriptor,
        bytes: &'a [u8],
        name: &str,
    ) -> Option<&'a [u8]> {
        let plan = self.plan(message);
        let index = plan.fields.iter().position(|f| f.name == name)?;
        match parse(plan, &[bytes])
            .ok()?
            .iter()
            .rev()
            .find(|(i, _)| *i == index)?
        {
            (_, Raw::Len(b)) => Some(b),
            _ => None,
        }
    }

    /// The member of the message's oneof that is set: its name and bytes.
    pub fn oneof_member<'a>(
        &self,
        message: &MessageDescriptor,
        bytes: &'a [u8],
    ) -> Option<(&str, &'a [u8])> {
        let plan = self.plan(message);
        let values = parse(plan, &[bytes]).ok()?;
        let (index, raw) = values.iter().rev().find(|(i, _)| plan.fields[*i].oneof)?;
        match raw {
            Raw::Len(b) => Some((plan.fields[*index].name.as_str(), b)),
            _ => None,
        }
    }

    fn write_plan(&self, plan: &Plan, parts: &[&[u8]], out: &mut Vec<u8>) -> Result<(), Malformed> {
        let values = parse(plan, parts)?;
        out.push(b'{');
        let mut first = true;
        for (index, field) in plan.fields.iter().enumerate() {
            let mut mine = values.iter().filter(|(i, _)| *i == index).map(|(_, r)| *r);
            let last = mine.clone().next_back();
            if field.oneof && last.is_none() {
                continue;
            }
            if field.omit_empty && last.is_none_or(|r| matches!(r, Raw::Len(b) if b.is_empty())) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&field.key);
            if field.list {
                out.push(b'[');
                let mut first = true;
                for raw in mine.by_ref() {
                    // A packed run of scalars holds several values.
                    let packed = matches!(raw, Raw::Len(_)) && is_numeric(&field.shape);
                    let items = if packed {
                        unpack(&field.shape, raw)?
                    } else {
                        vec![raw]
                    };
                    for item in items {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        self.write_value(field, Some(item), &[], out)?;
                    }
                }
                out.push(b']');
            } else if let Shape::Message(_) | Shape::Timestamp = field.shape {
                // A message sent in parts is their merge.
                let parts: Vec<&[u8]> = mine
                    .filter_map(|r| match r {
                        Raw::Len(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                self.write_value(field, None, &parts, out)?;
            } else {
                self.write_value(field, last, &[], out)?;
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// One value of `field`: `raw` for a scalar, `parts` for a message.
    fn write_value(
        &self,
        field: &FieldPlan,
        raw: Option<Raw>,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        let varint = || match raw {
            Some(Raw::Varint(v)) => Ok(v),
            None => Ok(0),
            _ => Err(Malformed("a varint field with another wire type")),
        };
        let fixed32 = || match raw {
            Some(Raw::Fixed32(v)) => Ok(v),
            None => Ok(0),
            _ => Err(Malformed("a 32-bit field with another wire type")),
        };
        let fixed64 = || match raw {
            Some(Raw::Fixed64(v)) => Ok(v),
            None => Ok(0),
            _ => Err(Malformed("a 64-bit field with another wire type")),
        };
        let bytes = || match raw {
            Some(Raw::Len(b)) => Ok(b),
            None => Ok(&[][..]),
            _ => Err(Malformed("a length-delimited field with another wire type")),
        };
        let number = |out: &mut Vec<u8>, n: &dyn std::fmt::Display| {
            let _ = write!(out, "{n}");
        };
        match &field.shape {
            Shape::String => {
                let text = std::str::from_utf8(bytes()?)
                    .map_err(|_| Malformed("a string that is not UTF-8"))?;
                write_str(out, text);
            }
            Shape::Bytes => {
                use base64::Engine as _;
                write_str(
                    out,
                    &base64::engine::general_purpose::STANDARD.encode(bytes()?),
                );
            }
            Shape::Bool => out.extend_from_slice(if varint()? != 0 { b"true" } else { b"false" }),
            Shape::Int32 => number(out, &(varint()? as i64 as i32)),
            Shape::Int64 => number(out, &(varint()? as i64)),
            Shape::Uint32 => number(out, &(varint()? as u32)),
            Shape::Uint64 => number(out, &varint()?),
            Shape::Sint32 => {
                let v = varint()? as u32;
                number(out, &(((v >> 1) as i32) ^ -((v & 1) as i32)));
            }
            Shape::Sint64 => {
                let v = varint()?;
                number(out, &(((v >> 1) as i64) ^ -((v & 1) as i64)));
            }
            Shape::Fixed32 => number(out, &fixed32()?),
            Shape::Sfixed32 => number(out, &(fixed32()? as i32)),
            Shape::Fixed64 => number(out, &fixed64()?),
            Shape::Sfixed64 => number(out, &(fixed64()? as i64)),
            Shape::Float => write_float(out, f64::from(f32::from_bits(fixed32()?))),
            Shape::Double => write_float(out, f64::from_bits(fixed64()?)),
            Shape::Enum(e) => {
                let n = varint()? as i32;
                match e.get_value(n) {
                    Some(value) => write_str(out, value.name()),
                    None => number(out, &n),
                }
            }
            Shape::Timestamp => {
                let parts = match raw {
                    Some(Raw::Len(b)) => vec![b],
                    _ => parts.to_vec(),
                };
                write_timestamp(out, &parts)?;
            }
            Shape::Message(index) => {
                let parts = match raw {
                    Some(Raw::Len(b)) => vec![b],
                    _ => parts.to_vec(),
                };
                if parts.is_empty() && !field.always {
                    out.extend_from_slice(b"null");
                } else {
                    self.write_plan(&self.plans[*index], &parts, out)?;
                }
            }
        }
        Ok(())
    }
}

fn shape(field: &FieldDescriptor, by_name: &HashMap<String, usize>) -> Shape {
    match field.kind() {
        Kind::String => Shape::String,
        Kind::Bytes => Shape::Bytes,
        Kind::Bool => Shape::Bool,
        Kind::Int32 => Shape::Int32,
        Kind::Int64 => Shape::Int64,
        Kind::Uint32 => Shape::Uint32,
        Kind::Uint64 => Shape::Uint64,
        Kind::Sint32 => Shape::Sint32,
        Kind::Sint64 => Shape::Sint64,
        Kind::Fixed32 => Shape::Fixed32,
        Kind::Fixed64 => Shape::Fixed64,
        Kind::Sfixed32 => Shape::Sfixed32,
        Kind::Sfixed64 => Shape::Sfixed64,
        Kind::Float => Shape::Float,
        Kind::Double => Shape::Double,
        Kind::Enum(e) => Shape::Enum(e),
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => Shape::Timestamp,
        Kind::Message(m) => Shape::Message(by_name[m.full_name()]),
    }
}

fn is_numeric(shape: &Shape) -> bool {
    !matches!(
        shape,
        Shape::String | Shape::Bytes | Shape::Timestamp | Shape::Message(_)
    )
}

/// The values of a packed run.
fn unpack<'a>(shape: &Shape, raw: Raw<'a>) -> Result<Vec<Raw<'a>>, Malformed> {
    let Raw::Len(mut bytes) = raw else {
        return Ok(vec![raw]);
    };
    let mut items = Vec::new();
    while !bytes.is_empty() {
        items.push(match shape {
            Shape::Fixed32 | Shape::Sfixed32 | Shape::Float => {
                Raw::Fixed32(fixed::<4>(&mut bytes)? as u32)
            }
            Shape::Fixed64 | Shape::Sfixed64 | Shape::Double => {
                Raw::Fixed64(fixed::<8>(&mut bytes)?)
            }
            _ => Raw::Varint(varint(&mut bytes)?),
        });
    }
    Ok(items)
}

/// The fields of a message sent in `parts`, in wire order, by index in
/// `plan`; fields the plan does not know are skipped.
fn parse<'a>(plan: &Plan, parts: &[&'a [u8]]) -> Result<Vec<(usize, Raw<'a>)>, Malformed> {
    let mut values = Vec::with_capacity(plan.fields.len());
    for part in parts {
        let mut bytes = *part;
        while !bytes.is_empty() {
            let key = varint(&mut bytes)?;
            let number = (key >> 3) as u32;
            let raw = match key & 7 {
                0 => Raw::Varint(varint(&mut bytes)?),
                1 => Raw::Fixed64(fixed::<8>(&mut bytes)?),
                2 => {
                    let len = usize::try_from(varint(&mut bytes)?)
                        .map_err(|_| Malformed("a length too long"))?;
                    if len > bytes.len() {
                        return Err(Malformed("a length past the end"));
                    }
                    let (value, rest) = bytes.split_at(len);
                    bytes = rest;
                    Raw::Len(value)
                }
                5 => Raw::Fixed32(fixed::<4>(&mut bytes)? as u32),
                _ => return Err(Malformed("a group or an unknown wire type")),
            };
            if let Some(index) = plan.fields.iter().position(|f| f.number == number) {
                values.push((index, raw));
            }
        }
    }
    Ok(values)
}

fn varint(bytes: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = bytes
            .split_first()
            .ok_or(Malformed("a varint past the end"))?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift.min(63);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed("a varint longer than ten bytes"))
}

fn fixed<const N: usize>(bytes: &mut &[u8]) -> Result<u64, Malformed> {
    if bytes.len() < N {
        return Err(Malformed("a fixed-width value past the end"));
    }
    let (value, rest) = bytes.split_at(N);
    *bytes = rest;
    let mut buffer = [0u8; 8];
    buffer[..N].copy_from_slice(value);
    Ok(u64::from_le_bytes(buffer))
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    // serde_json's escaping, into the same buffer.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_float(out: &mut Vec<u8>, value: f64) {
    let _ = serde_json::to_writer(&mut *out, &value);
}

/// A `google.protobuf.Timestamp` (seconds 1, nanos 2) with milliseconds;
/// `""` when absent.
fn write_timestamp(out: &mut Vec<u8>, parts: &[&[u8]]) -> Result<(), Malformed> {
    if parts.is_empty() {
        out.extend_from_slice(b"\"\"");
        return Ok(());
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for part in parts {
        let mut bytes = *part;
        while !bytes.is_empty() {
            let key = varint(&mut bytes)?;
            match (key >> 3, key & 7) {
                (1, 0) => seconds = varint(&mut bytes)? as i64,
                (2, 0) => nanos = varint(&mut bytes)? as i64 as i32,
                _ => return Err(Malformed("a timestamp with other fields")),
            }
        }
    }
    write_rfc3339(out, seconds, nanos.clamp(0, 999_999_999) as u32);
    Ok(())
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"`, as chrono's RFC 3339 with milliseconds
/// writes it, without its allocation; years outside 0..=9999 through
/// chrono.
fn write_rfc3339(out: &mut Vec<u8>, seconds: i64, nanos: u32) {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        let text = chrono::DateTime::from_timestamp(seconds, nanos)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        write_str(out, &text);
        return;
    }
    let digits = |out: &mut Vec<u8>, value: i64, width: u32| {
        for power in (0..width).rev() {
            out.push(b'0' + ((value / 10i64.pow(power)) % 10) as u8);
        }
    };
    out.push(b'"');
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, time / 3_600, 2);
    out.push(b':');
    digits(out, time / 60 % 60, 2);
    out.push(b':');
    digits(out, time % 60, 2);
    out.push(b'.');
    digits(out, i64::from(nanos / 1_000_000), 3);
    out.extend_from_slice(b"Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written format is chrono's, from before 1970 to 9999.
    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        for seconds in [
            -62_135_596_800, // 0001-01-01
            -86_401,
            -1,
            0,
            951_782_400, // 2000-02-29
            4_070_000_000,
            253_402_300_799, // 9999-12-31T23:59:59
            253_402_300_800, // year 10000: chrono's
        ] {
            for nanos in [0, 1, 999_999, 1_000_000, 123_456_789, 999_999_999] {
                let mut out = Vec::new();
                write_rfc3339(&mut out, seconds, nanos);
                let expected = chrono::DateTime::from_timestamp(seconds, nanos)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("\"{expected}\""),
                    "{seconds} {nanos}"
                );
            }
        }
    }

    #[test]
    fn malformed_bytes_are_refused_not_read_past() {
        let plans = plans();
        let allocation = super::super::bindings::pool()
            .get_message_by_name("vehicle_allocation.v1.Allocation")
            .unwrap();
        for bytes in [
            &[0x0a, 0x05, b'a'][..],
            &[0x0a][..],
            &[0xff; 11][..],
            &[0x0b][..],
        ] {
            assert!(
                plans.write(&allocation, bytes, &mut Vec::new()).is_err(),
                "{bytes:?}"
            );
        }
    }
}
