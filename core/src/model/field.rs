//! Fields: the logical types every derived schema speaks, and how Rust values map to Avro.

use apache_avro::types::Value as AvroValue;
#[cfg(feature = "arrow")]
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Utc};
use serde_json::{json, Value as JsonValue};
use uuid::Uuid;

/// Logical type of a field, the common vocabulary of every derived schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A UUID (Avro `string`/`uuid`, Arrow `Utf8`, Spark `STRING`, CQL `uuid`).
    Uuid,
    /// UTF-8 text.
    Text,
    /// 32-bit signed integer.
    Int,
    /// 64-bit float.
    Double,
    /// Instant in UTC with microsecond precision.
    Timestamp,
}

impl FieldType {
    /// The Avro type of a non-null value.
    pub fn avro(self) -> JsonValue {
        match self {
            FieldType::Uuid => json!({"type": "string", "logicalType": "uuid"}),
            FieldType::Text => json!("string"),
            FieldType::Int => json!("int"),
            FieldType::Double => json!("double"),
            FieldType::Timestamp => json!({"type": "long", "logicalType": "timestamp-micros"}),
        }
    }

    /// The Arrow type used by the local engine.
    #[cfg(feature = "arrow")]
    pub fn arrow(self) -> DataType {
        match self {
            FieldType::Uuid | FieldType::Text => DataType::Utf8,
            FieldType::Int => DataType::Int32,
            FieldType::Double => DataType::Float64,
            FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// The Spark SQL type name.
    pub fn spark(self) -> &'static str {
        match self {
            FieldType::Uuid | FieldType::Text => "STRING",
            FieldType::Int => "INT",
            FieldType::Double => "DOUBLE",
            FieldType::Timestamp => "TIMESTAMP",
        }
    }

    /// The CQL type name.
    pub fn cql(self) -> &'static str {
        match self {
            FieldType::Uuid => "uuid",
            FieldType::Text => "text",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Timestamp => "timestamp",
        }
    }
}

/// One field of a record: the single source every schema is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    pub nullable: bool,
    pub doc: &'static str,
}

/// Error converting an Avro value into a Rust field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("field `{field}`: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

/// A Rust type that can be a record field: knows its logical type and its Avro value.
pub trait Logical: Sized {
    const TYPE: FieldType;
    const NULLABLE: bool = false;
    fn to_avro(&self) -> AvroValue;
    fn from_avro(value: &AvroValue) -> Result<Self, String>;
    /// Appends the value in Avro's binary encoding for [`Logical::TYPE`] (the hot path of the
    /// producer: no intermediate [`AvroValue`] tree, no schema resolution per record).
    fn encode_avro(&self, out: &mut Vec<u8>);
}

/// Appends a `long` (or `int`) in Avro's zig-zag variable-length encoding.
pub fn encode_avro_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Appends a `string` (or `bytes`): its length as a `long`, then the bytes.
pub fn encode_avro_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    encode_avro_long(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

impl Logical for Uuid {
    const TYPE: FieldType = FieldType::Uuid;
    fn to_avro(&self) -> AvroValue {
        AvroValue::Uuid(*self)
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        match value {
            AvroValue::Uuid(u) => Ok(*u),
            AvroValue::String(s) => Uuid::parse_str(s).map_err(|e| format!("not a UUID: {e}")),
            other => Err(format!("expected a UUID, got {other:?}")),
        }
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        encode_avro_bytes(self.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes(), out);
    }
}

impl Logical for String {
    const TYPE: FieldType = FieldType::Text;
    fn to_avro(&self) -> AvroValue {
        AvroValue::String(self.clone())
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        match value {
            AvroValue::String(s) => Ok(s.clone()),
            other => Err(format!("expected a string, got {other:?}")),
        }
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        encode_avro_bytes(self.as_bytes(), out);
    }
}

impl Logical for i32 {
    const TYPE: FieldType = FieldType::Int;
    fn to_avro(&self) -> AvroValue {
        AvroValue::Int(*self)
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        match value {
            AvroValue::Int(i) => Ok(*i),
            other => Err(format!("expected an int, got {other:?}")),
        }
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        encode_avro_long(i64::from(*self), out);
    }
}

impl Logical for f64 {
    const TYPE: FieldType = FieldType::Double;
    fn to_avro(&self) -> AvroValue {
        AvroValue::Double(*self)
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        match value {
            AvroValue::Double(d) => Ok(*d),
            other => Err(format!("expected a double, got {other:?}")),
        }
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Logical for DateTime<Utc> {
    const TYPE: FieldType = FieldType::Timestamp;
    fn to_avro(&self) -> AvroValue {
        AvroValue::TimestampMicros(self.timestamp_micros())
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        let micros = match value {
            AvroValue::TimestampMicros(m) | AvroValue::Long(m) => *m,
            AvroValue::TimestampMillis(m) => m.saturating_mul(1000),
            other => return Err(format!("expected a timestamp, got {other:?}")),
        };
        DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("timestamp {micros}µs is out of range"))
    }
    fn encode_avro(&self, out: &mut Vec<u8>) {
        encode_avro_long(self.timestamp_micros(), out);
    }
}

impl<T: Logical> Logical for Option<T> {
    const TYPE: FieldType = T::TYPE;
    const NULLABLE: bool = true;
    fn to_avro(&self) -> AvroValue {
        match self {
            None => AvroValue::Union(0, Box::new(AvroValue::Null)),
            Some(v) => AvroValue::Union(1, Box::new(v.to_avro())),
        }
    }
    fn from_avro(value: &AvroValue) -> Result<Self, String> {
        match value {
            AvroValue::Null => Ok(None),
            AvroValue::Union(_, inner) => match inner.as_ref() {
                AvroValue::Null => Ok(None),
                v => T::from_avro(v).map(Some),
            },
            v => T::from_avro(v).map(Some),
        }
    }
    /// Unions are `["null", T]`: branch 0 is null, branch 1 the value.
    fn encode_avro(&self, out: &mut Vec<u8>) {
        match self {
            None => encode_avro_long(0, out),
            Some(v) => {
                encode_avro_long(1, out);
                v.encode_avro(out);
            }
        }
    }
}
