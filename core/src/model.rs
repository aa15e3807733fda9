//! The record model, defined once.
//!
//! [`UserEvent`] is the `users_created` Kafka event and [`CreatedUserRow`] the
//! `spark_streams.created_users` Cassandra row. Each struct is declared through the
//! [`record!`] macro, which also emits a `FIELDS` table describing every field's logical type
//! and nullability. Every other representation is *derived* from that table:
//!
//! | representation                  | function                |
//! |---------------------------------|-------------------------|
//! | Avro schema (schema registry)   | [`avro_schema`]         |
//! | Arrow schema (DataFusion)       | [`arrow_schema`]        |
//! | Spark DDL (`from_json`, tables) | [`spark_ddl`]           |
//! | CQL `CREATE TABLE`              | [`cql_create_table`]    |
//!
//! so the formats cannot drift apart; the unit tests below check them field by field.

#[cfg(feature = "arrow")]
use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
#[cfg(feature = "arrow")]
use arrow::datatypes::{DataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit};
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

/// Declares a record struct together with its `FIELDS` table and Avro conversions.
///
/// Field docs become the schema docs, so the struct is the one place to describe a field.
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( #[doc = $doc:literal] pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl $name {
            /// Every field in declaration order: the source of all derived schemas.
            pub const FIELDS: &'static [$crate::model::Field] = &[
                $( $crate::model::Field {
                    name: stringify!($field),
                    ty: <$ty as $crate::model::Logical>::TYPE,
                    nullable: <$ty as $crate::model::Logical>::NULLABLE,
                    doc: $doc.trim_ascii(),
                }, )*
            ];

            /// The record as an Avro record value, fields in schema order.
            pub fn to_avro(&self) -> ::apache_avro::types::Value {
                ::apache_avro::types::Value::Record(vec![
                    $( (stringify!($field).to_string(), $crate::model::Logical::to_avro(&self.$field)), )*
                ])
            }

            /// Appends the record in Avro's binary encoding (fields in schema order): the same
            /// bytes as `apache_avro::to_avro_datum` of [`Self::to_avro`], without the value tree.
            pub fn encode_avro(&self, out: &mut Vec<u8>) {
                $( $crate::model::Logical::encode_avro(&self.$field, out); )*
            }

            /// Reads the record back from an Avro record value (fields looked up by name).
            pub fn from_avro(value: &::apache_avro::types::Value) -> Result<Self, $crate::model::FieldError> {
                let ::apache_avro::types::Value::Record(fields) = value else {
                    return Err($crate::model::FieldError { field: "<record>", reason: "not an Avro record".into() });
                };
                let get = |name: &'static str| -> Result<&::apache_avro::types::Value, $crate::model::FieldError> {
                    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
                        .ok_or($crate::model::FieldError { field: name, reason: "missing".into() })
                };
                Ok(Self {
                    $( $field: {
                        let field = stringify!($field);
                        match get(field) {
                            Ok(v) => <$ty as $crate::model::Logical>::from_avro(v)
                                .map_err(|reason| $crate::model::FieldError { field, reason })?,
                            // A field absent from the writer's schema is null if it may be.
                            Err(e) if <$ty as $crate::model::Logical>::NULLABLE =>
                                <$ty as $crate::model::Logical>::from_avro(&::apache_avro::types::Value::Null)
                                    .map_err(|_| e)?,
                            Err(e) => return Err(e),
                        }
                    }, )*
                })
            }
        }
    };
}

record! {
    /// A user profile as published on Kafka topic `users_created`.
    ///
    /// Normalised by the producer from a RandomUser API record (or the synthetic source).
    /// Credentials (`login.password`, `salt`, `md5`, `sha1`, `sha256`) never reach it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct UserEvent {
        /// User id: RandomUser `login.uuid`; also the Kafka key.
        pub id: Uuid,
        /// `male` or `female` as the API reports it.
        pub gender: Option<String>,
        /// Title such as Mr, Ms, Mademoiselle.
        pub title: Option<String>,
        /// Given name.
        pub first_name: String,
        /// Family name.
        pub last_name: String,
        /// Street number.
        pub street_number: Option<i32>,
        /// Street name.
        pub street_name: Option<String>,
        /// City.
        pub city: Option<String>,
        /// State, province or region.
        pub state: Option<String>,
        /// Country name.
        pub country: Option<String>,
        /// Postal code as text (the API sends a number for some nationalities).
        pub post_code: Option<String>,
        /// Latitude in degrees.
        pub latitude: Option<f64>,
        /// Longitude in degrees.
        pub longitude: Option<f64>,
        /// UTC offset such as +9:30.
        pub timezone_offset: Option<String>,
        /// E-mail address.
        pub email: String,
        /// Login name.
        pub username: String,
        /// Date of birth.
        pub dob: Option<DateTime<Utc>>,
        /// When the user registered.
        pub registered_date: Option<DateTime<Utc>>,
        /// Phone number.
        pub phone: Option<String>,
        /// Mobile number.
        pub cell: Option<String>,
        /// URL of the large picture.
        pub picture: Option<String>,
        /// Two-letter nationality code such as US or FR.
        pub nat: Option<String>,
        /// Where the record came from: randomuser or synthetic.
        pub source: String,
        /// When the producer fetched or generated the record.
        pub fetched_at: DateTime<Utc>,
        /// When the producer published the event.
        pub produced_at: DateTime<Utc>,
    }
}

record! {
    /// A row of `spark_streams.created_users`: the seed's columns plus enrichment.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CreatedUserRow {
        /// Primary key: the user id.
        pub id: Uuid,
        /// Given name.
        pub first_name: String,
        /// Family name.
        pub last_name: String,
        /// Gender.
        pub gender: Option<String>,
        /// E-mail address.
        pub email: String,
        /// Login name.
        pub username: String,
        /// Phone number.
        pub phone: Option<String>,
        /// Postal address: number street, city, state, country.
        pub address: Option<String>,
        /// Postal code as text.
        pub post_code: Option<String>,
        /// Date of birth.
        pub dob: Option<DateTime<Utc>>,
        /// When the user registered.
        pub registered_date: Option<DateTime<Utc>>,
        /// URL of the large picture.
        pub picture: Option<String>,
        /// Event time: when the producer fetched the record.
        pub timestamp: DateTime<Utc>,
        /// Age in whole years at processing time, from dob.
        pub age: Option<i32>,
        /// Domain part of the e-mail address, lower case.
        pub email_domain: Option<String>,
        /// Nationality code, upper case.
        pub nationality: Option<String>,
        /// When the producer published the event.
        pub produced_at: DateTime<Utc>,
        /// When the engine processed the event.
        pub processed_at: DateTime<Utc>,
        /// Which engine wrote the row: spark or datafusion.
        pub engine: String,
    }
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

/// The Arrow schema of a record.
#[cfg(feature = "arrow")]
pub fn arrow_schema(fields: &[Field]) -> Arc<ArrowSchema> {
    Arc::new(ArrowSchema::new(
        fields.iter().map(|f| ArrowField::new(f.name, f.ty.arrow(), f.nullable)).collect::<Vec<_>>(),
    ))
}

/// A Spark DDL schema string (`name TYPE [NOT NULL], ...`).
pub fn spark_ddl(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}{}", f.name, f.ty.spark(), if f.nullable { "" } else { " NOT NULL" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A CQL `CREATE TABLE IF NOT EXISTS` statement; the first field is the primary key.
pub fn cql_create_table(keyspace: &str, table: &str, fields: &[Field]) -> String {
    let columns: Vec<String> = fields.iter().map(|f| format!("{} {}", quote_cql(f.name), f.ty.cql())).collect();
    let pk = fields.first().map(|f| quote_cql(f.name)).unwrap_or_default();
    format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({}, PRIMARY KEY ({pk}))", columns.join(", "))
}

/// A prepared-statement `INSERT` of every field, in field order (one `?` per field).
pub fn cql_insert(keyspace: &str, table: &str, fields: &[Field]) -> String {
    let columns: Vec<String> = fields.iter().map(|f| quote_cql(f.name)).collect();
    let marks = vec!["?"; fields.len()].join(", ");
    format!("INSERT INTO {keyspace}.{table} ({}) VALUES ({marks})", columns.join(", "))
}

/// Quotes CQL identifiers that are reserved words (`timestamp` is one of the seed's columns).
fn quote_cql(name: &str) -> String {
    const RESERVED: &[&str] = &["timestamp", "date", "time", "key", "token"];
    if RESERVED.contains(&name) {
        format!("\"{name}\"")
    } else {
        name.to_string()
    }
}

/// `CREATE KEYSPACE IF NOT EXISTS` with SimpleStrategy (single-node development cluster).
pub fn cql_create_keyspace(keyspace: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    fn sample_event() -> UserEvent {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).ok();
        UserEvent {
            id: Uuid::parse_str("7a0eed16-9430-4d68-901f-c0d4c1c3bf00").unwrap_or_default(),
            gender: Some("female".into()),
            title: Some("Mademoiselle".into()),
            first_name: "Zoé".into(),
            last_name: "Lefèvre".into(),
            street_number: Some(4962),
            street_name: Some("Rue Principale".into()),
            city: Some("Lyon".into()),
            state: None,
            country: Some("France".into()),
            post_code: Some("69001".into()),
            latitude: Some(45.76),
            longitude: Some(4.83),
            timezone_offset: Some("+1:00".into()),
            email: "zoe.lefevre@example.com".into(),
            username: "bluecat123".into(),
            dob: t("1902-03-04T05:06:07.123Z"),
            registered_date: t("2015-01-02T03:04:05.678Z"),
            phone: Some("01-23-45-67-89".into()),
            cell: None,
            picture: Some("https://randomuser.me/api/portraits/women/1.jpg".into()),
            nat: Some("FR".into()),
            source: "synthetic".into(),
            fetched_at: t("2026-11-28T00:00:00Z").unwrap_or_default(),
            produced_at: t("2026-11-28T00:00:01.5Z").unwrap_or_default(),
        }
    }

    #[test]
    fn avro_schema_parses_and_matches_fields() {
        let schema = Schema::parse(&event_avro_schema()).expect("derived Avro schema must parse");
        let Schema::Record(record) = &schema else { panic!("not a record schema") };
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        let expected: Vec<&str> = UserEvent::FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(names, expected);
        for (avro, field) in record.fields.iter().zip(UserEvent::FIELDS) {
            assert_eq!(matches!(avro.schema, Schema::Union(_)), field.nullable, "nullability of {}", field.name);
        }
    }

    #[test]
    fn event_roundtrips_through_avro_binary() {
        let schema = Schema::parse(&event_avro_schema()).expect("schema");
        let event = sample_event();
        let bytes = apache_avro::to_avro_datum(&schema, event.to_avro()).expect("encode");
        let decoded = apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decode");
        assert_eq!(UserEvent::from_avro(&decoded), Ok(event));
    }

    #[test]
    fn direct_encoding_equals_apache_avro() {
        let schema = Schema::parse(&event_avro_schema()).expect("schema");
        let full = sample_event();
        let empty = UserEvent {
            gender: None,
            title: None,
            street_number: None,
            street_name: None,
            city: None,
            country: None,
            post_code: None,
            latitude: None,
            longitude: None,
            timezone_offset: None,
            dob: None,
            registered_date: None,
            phone: None,
            picture: None,
            nat: None,
            first_name: String::new(),
            ..full.clone()
        };
        let extremes = UserEvent {
            street_number: Some(i32::MIN),
            latitude: Some(-0.0),
            longitude: Some(f64::MAX),
            dob: DateTime::from_timestamp_micros(-2_208_988_800_000_001),
            registered_date: DateTime::from_timestamp_micros(i64::MAX / 1000),
            first_name: "Олександра 李 ✓".repeat(40),
            ..full.clone()
        };
        for event in [full, empty, extremes] {
            let mut direct = Vec::new();
            event.encode_avro(&mut direct);
            let reference = apache_avro::to_avro_datum(&schema, event.to_avro()).expect("encode");
            assert_eq!(direct, reference, "{event:?}");
            assert!(decode_avro_fields(UserEvent::FIELDS, &direct).is_ok());
        }
        for n in [i64::MIN, i64::MAX, -1, 0, 1 << 40] {
            let mut out = Vec::new();
            encode_avro_long(n, &mut out);
            assert_eq!(decode_avro_long(&mut out.as_slice()), Ok(n));
        }
    }

    #[test]
    fn direct_decoding_reads_back_every_field() {
        let event = sample_event();
        let mut datum = Vec::new();
        event.encode_avro(&mut datum);
        let cells = decode_avro_fields(UserEvent::FIELDS, &datum).expect("decode");
        assert_eq!(cells.len(), UserEvent::FIELDS.len());
        assert_eq!(cells[0], Cell::Text("7a0eed16-9430-4d68-901f-c0d4c1c3bf00"));
        assert_eq!(cells[3], Cell::Text("Zoé"));
        assert_eq!(cells[5], Cell::Int(4962));
        assert_eq!(cells[8], Cell::Null);
        assert_eq!(cells[11], Cell::Double(45.76));
        let dob = event.dob.map(|d| d.timestamp_micros()).unwrap_or_default();
        assert_eq!(cells[16], Cell::Timestamp(dob));
        assert_eq!(cells[19], Cell::Null);

        // Every truncation is an error naming a field, never a panic.
        for cut in 0..datum.len() {
            let err = decode_avro_fields(UserEvent::FIELDS, &datum[..cut]).unwrap_err();
            assert!(err.starts_with("field `"), "{err}");
        }
        let mut longer = datum.clone();
        longer.push(0);
        assert_eq!(
            decode_avro_fields(UserEvent::FIELDS, &longer).unwrap_err(),
            "1 trailing byte(s) after the Avro record"
        );
        let mut bad_branch = datum.clone();
        bad_branch[37] = 4; // gender's union branch, after the 36-character id and its length
        assert!(decode_avro_fields(UserEvent::FIELDS, &bad_branch).unwrap_err().contains("union branch 2"));
        assert!(decode_avro_fields(UserEvent::FIELDS, &[0xFF; 11]).unwrap_err().contains("longer than 10 bytes"));
    }

    #[test]
    fn zigzag_longs_match_the_spec_examples() {
        for (n, bytes) in [(0, vec![0]), (-1, vec![1]), (1, vec![2]), (-64, vec![0x7f]), (64, vec![0x80, 0x01])] {
            let mut out = Vec::new();
            encode_avro_long(n, &mut out);
            assert_eq!(out, bytes, "{n}");
            assert_eq!(decode_avro_long(&mut out.as_slice()), Ok(n));
        }
    }

    #[test]
    #[cfg(feature = "arrow")]
    fn arrow_schema_agrees_field_by_field() {
        let arrow = arrow_schema(UserEvent::FIELDS);
        assert_eq!(arrow.fields().len(), UserEvent::FIELDS.len());
        for (a, f) in arrow.fields().iter().zip(UserEvent::FIELDS) {
            assert_eq!((a.name().as_str(), a.data_type(), a.is_nullable()), (f.name, &f.ty.arrow(), f.nullable));
        }
    }

    #[test]
    fn spark_ddl_lists_every_field_with_its_type() {
        let ddl = spark_ddl(UserEvent::FIELDS);
        let parts: Vec<&str> = ddl.split(", ").collect();
        assert_eq!(parts.len(), UserEvent::FIELDS.len());
        assert_eq!(parts[0], "id STRING NOT NULL");
        assert!(parts.contains(&"dob TIMESTAMP"));
        assert!(parts.contains(&"street_number INT"));
    }

    #[test]
    fn cql_table_has_every_row_column_and_quotes_reserved_words() {
        let cql = cql_create_table("ks", "t", CreatedUserRow::FIELDS);
        assert!(cql.starts_with("CREATE TABLE IF NOT EXISTS ks.t (id uuid, "));
        assert!(cql.contains("\"timestamp\" timestamp"));
        assert!(cql.ends_with("PRIMARY KEY (id))"));
        for f in CreatedUserRow::FIELDS {
            assert!(cql.contains(&format!("{} {}", quote_cql(f.name), f.ty.cql())), "missing {}", f.name);
        }
    }

    #[test]
    fn cql_insert_binds_every_column_in_order() {
        let cql = cql_insert("ks", "t", CreatedUserRow::FIELDS);
        assert!(cql.starts_with("INSERT INTO ks.t (id, first_name, "));
        assert!(cql.contains("\"timestamp\""));
        assert_eq!(cql.matches('?').count(), CreatedUserRow::FIELDS.len());
    }

    #[test]
    fn seed_columns_are_kept() {
        let seed = [
            "id",
            "first_name",
            "last_name",
            "gender",
            "email",
            "username",
            "phone",
            "address",
            "post_code",
            "dob",
            "registered_date",
            "picture",
            "timestamp",
        ];
        for name in seed {
            assert!(CreatedUserRow::FIELDS.iter().any(|f| f.name == name), "seed column {name} missing");
        }
    }

    #[test]
    fn missing_nullable_field_reads_as_none_but_missing_required_field_fails() {
        let full = sample_event().to_avro();
        let AvroValue::Record(fields) = full else { panic!() };
        let without = |name: &str| AvroValue::Record(fields.iter().filter(|(n, _)| n != name).cloned().collect());
        assert_eq!(UserEvent::from_avro(&without("cell")).map(|e| e.cell), Ok(None));
        assert_eq!(UserEvent::from_avro(&without("email")).err().map(|e| e.field), Some("email"));
    }
}
