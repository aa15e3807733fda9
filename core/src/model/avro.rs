//! Avro: the registered schema of a record and a zero-copy decoder of its datums.

use serde_json::{json, Value as JsonValue};
use uuid::Uuid;

use super::field::{Field, FieldType};
use super::UserEvent;

/// One decoded field value, borrowing text from the datum (see [`decode_avro_fields`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    /// Text and UUID fields (a UUID stays text: validating it is the transform's job).
    Text(&'a str),
    /// A parsed UUID (from an apache-avro value), written as text.
    Uuid(Uuid),
    Int(i32),
    Double(f64),
    /// Microseconds since the epoch.
    Timestamp(i64),
}

/// Decodes one Avro datum written with the schema of `fields` (as [`avro_schema`] derives it)
/// into one [`Cell`] per field, without building an [`AvroValue`] tree. The whole datum must
/// be consumed.
///
/// # Errors
/// A reason naming the field: truncated input, a bad union branch, a negative or oversized
/// length, invalid UTF-8, an `int` out of range, or bytes left after the record.
pub fn decode_avro_fields<'a>(fields: &[Field], mut datum: &'a [u8]) -> Result<Vec<Cell<'a>>, String> {
    let input = &mut datum;
    let mut cells = Vec::with_capacity(fields.len());
    for f in fields {
        let cell = decode_field(f, input).map_err(|reason| format!("field `{}`: {reason}", f.name))?;
        cells.push(cell);
    }
    if !input.is_empty() {
        return Err(format!("{} trailing byte(s) after the Avro record", input.len()));
    }
    Ok(cells)
}

fn decode_field<'a>(field: &Field, input: &mut &'a [u8]) -> Result<Cell<'a>, String> {
    if field.nullable {
        match decode_avro_long(input)? {
            0 => return Ok(Cell::Null),
            1 => {}
            branch => return Err(format!("union branch {branch} (the schema has 0 and 1)")),
        }
    }
    Ok(match field.ty {
        FieldType::Uuid | FieldType::Text => {
            let len = decode_avro_long(input)?;
            let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
            if len > input.len() {
                return Err(format!("length {len} beyond the {} byte(s) left", input.len()));
            }
            let (text, rest) = input.split_at(len);
            *input = rest;
            Cell::Text(std::str::from_utf8(text).map_err(|e| format!("invalid UTF-8: {e}"))?)
        }
        FieldType::Int => {
            let n = decode_avro_long(input)?;
            Cell::Int(i32::try_from(n).map_err(|_| format!("{n} does not fit an int"))?)
        }
        FieldType::Double => {
            let Some((bytes, rest)) = input.split_first_chunk::<8>() else {
                return Err("truncated double".into());
            };
            *input = rest;
            Cell::Double(f64::from_le_bytes(*bytes))
        }
        FieldType::Timestamp => Cell::Timestamp(decode_avro_long(input)?),
    })
}

/// Reads a zig-zag variable-length `long`.
pub fn decode_avro_long(input: &mut &[u8]) -> Result<i64, String> {
    let mut z: u64 = 0;
    for (i, byte) in input.iter().enumerate().take(10) {
        z |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err(if input.len() < 10 { "truncated long".into() } else { "long longer than 10 bytes".into() })
}

/// Name of the Avro record and of its namespace in the registry.
pub const EVENT_RECORD_NAME: &str = "UserEvent";
pub const EVENT_NAMESPACE: &str = "io.pipeline.users";

/// The Avro schema of a record, as registered under `users_created-value`.
///
/// Nullable fields are `["null", T]` unions with a `null` default so that adding one is a
/// BACKWARD-compatible change.
pub fn avro_schema(name: &str, namespace: &str, doc: &str, fields: &[Field]) -> JsonValue {
    let fields: Vec<JsonValue> = fields
        .iter()
        .map(|f| {
            if f.nullable {
                json!({"name": f.name, "type": ["null", f.ty.avro()], "default": null, "doc": f.doc})
            } else {
                json!({"name": f.name, "type": f.ty.avro(), "doc": f.doc})
            }
        })
        .collect();
    json!({"type": "record", "name": name, "namespace": namespace, "doc": doc, "fields": fields})
}

/// The Avro schema of [`UserEvent`].
pub fn event_avro_schema() -> JsonValue {
    avro_schema(EVENT_RECORD_NAME, EVENT_NAMESPACE, "A user profile published on users_created", UserEvent::FIELDS)
}
