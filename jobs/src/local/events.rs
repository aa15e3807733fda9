//! Kafka messages -> one Arrow record batch shaped as the transform's input view.
//!
//! The columns are the event fields of [`UserEvent::FIELDS`] (built generically from each
//! field's logical type, so a new field needs no code here), then the Kafka columns and
//! `decode_error`. A message that could not be decoded keeps its Kafka columns and gets NULL
//! event fields plus its `decode_error`, so the transform routes it to the dead-letter topic.

use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
use arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use pipeline_core::model::{arrow_schema, Cell, FieldType, UserEvent};
use uuid::Uuid;

/// One consumed message, decoded or not.
#[derive(Debug, Clone)]
pub struct Message {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
    /// The decoded Avro record, or why decoding failed.
    pub event: Result<AvroValue, String>,
}

/// The schema of the transform's input view.
pub fn input_schema() -> SchemaRef {
    let mut fields: Vec<Field> = arrow_schema(UserEvent::FIELDS).fields().iter().map(|f| f.as_ref().clone()).collect();
    // Event fields may be NULL when a message did not decode.
    fields = fields.into_iter().map(|f| f.with_nullable(true)).collect();
    fields.extend([
        Field::new("kafka_key", DataType::Utf8, true),
        Field::new("kafka_value", DataType::Binary, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("decode_error", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(fields))
}

/// The value of a record field, unwrapping `["null", T]` unions; `None` for null or absent.
fn field<'a>(record: &'a AvroValue, name: &str) -> Option<&'a AvroValue> {
    let AvroValue::Record(fields) = record else { return None };
    let value = fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)?;
    match value {
        AvroValue::Null => None,
        AvroValue::Union(_, inner) if matches!(inner.as_ref(), AvroValue::Null) => None,
        AvroValue::Union(_, inner) => Some(inner.as_ref()),
        v => Some(v),
    }
}

/// An Avro value as a [`Cell`] of the field's logical type (anything else is NULL).
fn avro_cell(ty: FieldType, value: Option<&AvroValue>) -> Cell<'_> {
    match (ty, value) {
        (FieldType::Uuid | FieldType::Text, Some(AvroValue::String(s))) => Cell::Text(s),
        (FieldType::Uuid | FieldType::Text, Some(AvroValue::Uuid(u))) => Cell::Uuid(*u),
        (FieldType::Int, Some(AvroValue::Int(i))) => Cell::Int(*i),
        (FieldType::Double, Some(AvroValue::Double(d))) => Cell::Double(*d),
        (FieldType::Double, Some(AvroValue::Float(f))) => Cell::Double(f64::from(*f)),
        (FieldType::Timestamp, Some(AvroValue::TimestampMicros(t) | AvroValue::Long(t))) => Cell::Timestamp(*t),
        (FieldType::Timestamp, Some(AvroValue::TimestampMillis(t))) => {
            t.checked_mul(1000).map_or(Cell::Null, Cell::Timestamp)
        }
        _ => Cell::Null,
    }
}

/// The builder of one event column.
enum ColumnBuilder {
    Text(StringBuilder),
    Int(Int32Builder),
    Double(Float64Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: FieldType, capacity: usize) -> Self {
        match ty {
            FieldType::Uuid | FieldType::Text => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            FieldType::Int => ColumnBuilder::Int(Int32Builder::with_capacity(capacity)),
            FieldType::Double => ColumnBuilder::Double(Float64Builder::with_capacity(capacity)),
            FieldType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
        }
    }

    /// Appends a cell; one of another type than the column's is NULL.
    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (ColumnBuilder::Text(b), Cell::Text(s)) => b.append_value(s),
            (ColumnBuilder::Text(b), Cell::Uuid(u)) => {
                b.append_value(u.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
            }
            (ColumnBuilder::Int(b), Cell::Int(i)) => b.append_value(i),
            (ColumnBuilder::Double(b), Cell::Double(d)) => b.append_value(d),
            (ColumnBuilder::Timestamp(b), Cell::Timestamp(t)) => b.append_value(t),
            (ColumnBuilder::Text(b), _) => b.append_null(),
            (ColumnBuilder::Int(b), _) => b.append_null(),
            (ColumnBuilder::Double(b), _) => b.append_null(),
            (ColumnBuilder::Timestamp(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Double(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// What one message contributes to the event columns.
pub enum Event<'a> {
    /// Fields decoded straight from the datum ([`pipeline_core::model::decode_avro_fields`]).
    Cells(&'a [Cell<'a>]),
    /// A record decoded (and resolved) by apache-avro.
    Value(&'a AvroValue),
    /// Not decodable: the event columns are NULL and `decode_error` says why.
    Error(&'a str),
}

/// Builds the transform's input batch one message at a time.
pub struct InputBuilder {
    events: Vec<ColumnBuilder>,
    keys: StringBuilder,
    values: BinaryBuilder,
    partitions: Int32Builder,
    offsets: Int64Builder,
    errors: StringBuilder,
}

impl InputBuilder {
    pub fn with_capacity(capacity: usize) -> Self {
        InputBuilder {
            events: UserEvent::FIELDS.iter().map(|f| ColumnBuilder::new(f.ty, capacity)).collect(),
            keys: StringBuilder::with_capacity(capacity, capacity * 36),
            values: BinaryBuilder::with_capacity(capacity, capacity * 400),
            partitions: Int32Builder::with_capacity(capacity),
            offsets: Int64Builder::with_capacity(capacity),
            errors: StringBuilder::new(),
        }
    }

    pub fn push(&mut self, key: Option<&str>, value: &[u8], partition: i32, offset: i64, event: Event<'_>) {
        match event {
            Event::Cells(cells) => {
                for (column, cell) in self.events.iter_mut().zip(cells) {
                    column.append(*cell);
                }
                self.errors.append_null();
            }
            Event::Value(record) => {
                for (column, f) in self.events.iter_mut().zip(UserEvent::FIELDS) {
                    column.append(avro_cell(f.ty, field(record, f.name)));
                }
                self.errors.append_null();
            }
            Event::Error(reason) => {
                for column in &mut self.events {
                    column.append(Cell::Null);
                }
                self.errors.append_value(reason);
            }
        }
        self.keys.append_option(key);
        self.values.append_value(value);
        self.partitions.append_value(partition);
        self.offsets.append_value(offset);
    }

    pub fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = self.events.iter_mut().map(ColumnBuilder::finish).collect();
        columns.push(Arc::new(self.keys.finish()));
        columns.push(Arc::new(self.values.finish()));
        columns.push(Arc::new(self.partitions.finish()));
        columns.push(Arc::new(self.offsets.finish()));
        columns.push(Arc::new(self.errors.finish()));
        RecordBatch::try_new(input_schema(), columns)
    }
}

/// Builds the input batch of the transform from messages decoded by apache-avro.
pub fn to_batch(messages: &[Message]) -> Result<RecordBatch, ArrowError> {
    let mut builder = InputBuilder::with_capacity(messages.len());
    for m in messages {
        let event = match &m.event {
            Ok(record) => Event::Value(record),
            Err(reason) => Event::Error(reason),
        };
        builder.push(m.key.as_deref(), &m.value, m.partition, m.offset, event);
    }
    builder.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(id: &str, email: &str) -> UserEvent {
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&chrono::Utc)).ok();
        UserEvent {
            id: id.parse().unwrap_or_default(),
            gender: Some("female".into()),
            title: Some("Ms".into()),
            first_name: "Олена".into(),
            last_name: "Шевченко".into(),
            street_number: Some(12),
            street_name: Some("Khreshchatyk".into()),
            city: Some("Kyiv".into()),
            state: None,
            country: Some("Ukraine".into()),
            post_code: Some("01001".into()),
            latitude: Some(50.45),
            longitude: None,
            timezone_offset: Some("+2:00".into()),
            email: email.into(),
            username: "olena".into(),
            dob: t("1900-03-01T00:00:00Z"),
            registered_date: t("2999-12-31T23:59:59.999Z"),
            phone: None,
            cell: None,
            picture: None,
            nat: Some("ua".into()),
            source: "synthetic".into(),
            fetched_at: t("2026-02-28T12:00:00Z").unwrap_or_default(),
            produced_at: t("2026-02-28T12:00:01Z").unwrap_or_default(),
        }
    }

    #[test]
    fn decoded_and_undecodable_messages_share_one_batch() {
        let ok = Message {
            key: Some("k".into()),
            value: vec![0, 0, 0, 0, 1],
            partition: 2,
            offset: 7,
            event: Ok(sample("7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "o@x.ua").to_avro()),
        };
        let bad = Message { key: None, value: vec![9], partition: 0, offset: 8, event: Err("bad magic".into()) };
        let batch = to_batch(&[ok, bad]).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), input_schema());
        let first = batch.column_by_name("first_name").expect("column");
        assert!(first.is_valid(0) && first.is_null(1));
        let err = batch.column_by_name("decode_error").expect("column");
        assert!(err.is_null(0) && err.is_valid(1));
        assert!(batch.column_by_name("state").expect("column").is_null(0), "a null union stays null");
    }

    #[test]
    fn direct_decoding_builds_the_same_batch_as_apache_avro() {
        let events = [
            sample("7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "o@x.ua"),
            UserEvent { latitude: None, dob: None, nat: None, ..sample("00000000-0000-4000-8000-000000000001", "a@b") },
        ];
        let schema = apache_avro::Schema::parse(&pipeline_core::model::event_avro_schema()).expect("schema");
        let mut direct = InputBuilder::with_capacity(2);
        let mut reference = InputBuilder::with_capacity(2);
        for (i, event) in events.iter().enumerate() {
            let mut datum = Vec::new();
            event.encode_avro(&mut datum);
            let cells = pipeline_core::model::decode_avro_fields(UserEvent::FIELDS, &datum).expect("decode");
            direct.push(Some("k"), &datum, 0, i as i64, Event::Cells(&cells));
            let value = apache_avro::from_avro_datum(&schema, &mut datum.as_slice(), None).expect("decode");
            reference.push(Some("k"), &datum, 0, i as i64, Event::Value(&value));
        }
        assert_eq!(direct.finish().expect("batch"), reference.finish().expect("batch"));
    }
}
