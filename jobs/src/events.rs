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
use pipeline_core::model::{arrow_schema, FieldType, UserEvent};

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

fn column(ty: FieldType, name: &str, messages: &[Message]) -> ArrayRef {
    let values = messages.iter().map(|m| m.event.as_ref().ok().and_then(|r| field(r, name)));
    match ty {
        FieldType::Uuid | FieldType::Text => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Some(AvroValue::String(s)) => b.append_value(s),
                    Some(AvroValue::Uuid(u)) => b.append_value(u.to_string()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        FieldType::Int => {
            let mut b = Int32Builder::new();
            for v in values {
                b.append_option(match v {
                    Some(AvroValue::Int(i)) => Some(*i),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        FieldType::Double => {
            let mut b = Float64Builder::new();
            for v in values {
                b.append_option(match v {
                    Some(AvroValue::Double(d)) => Some(*d),
                    Some(AvroValue::Float(f)) => Some(f64::from(*f)),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        FieldType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in values {
                b.append_option(match v {
                    Some(AvroValue::TimestampMicros(t) | AvroValue::Long(t)) => Some(*t),
                    Some(AvroValue::TimestampMillis(t)) => t.checked_mul(1000),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
    }
}

/// Builds the input batch of the transform.
pub fn to_batch(messages: &[Message]) -> Result<RecordBatch, ArrowError> {
    let mut columns: Vec<ArrayRef> = UserEvent::FIELDS.iter().map(|f| column(f.ty, f.name, messages)).collect();
    let mut keys = StringBuilder::new();
    let mut values = BinaryBuilder::new();
    let mut partitions = Int32Builder::new();
    let mut offsets = Int64Builder::new();
    let mut errors = StringBuilder::new();
    for m in messages {
        keys.append_option(m.key.as_deref());
        values.append_value(&m.value);
        partitions.append_value(m.partition);
        offsets.append_value(m.offset);
        errors.append_option(m.event.as_ref().err());
    }
    columns.push(Arc::new(keys.finish()));
    columns.push(Arc::new(values.finish()));
    columns.push(Arc::new(partitions.finish()));
    columns.push(Arc::new(offsets.finish()));
    columns.push(Arc::new(errors.finish()));
    RecordBatch::try_new(input_schema(), columns)
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
}
