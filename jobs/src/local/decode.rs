//! Registry-framed Avro -> Avro record values, with writer schemas fetched by id and cached.

use std::collections::HashMap;

use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use pipeline_core::model::event_avro_schema;
use pipeline_core::registry::{unframe, RegistryClient, RegistryError};

/// Decodes values into records of the engine's reader schema (the event schema compiled in),
/// resolving from whatever schema each message was written with.
pub struct Decoder {
    registry: RegistryClient,
    reader: Schema,
    reader_json: serde_json::Value,
    /// Writer schemas by id; `Err` caches "unknown id" and "does not parse" answers.
    writers: HashMap<u32, Result<Option<Schema>, String>>,
}

impl Decoder {
    pub fn new(registry: RegistryClient) -> Result<Decoder, String> {
        let reader_json = event_avro_schema();
        let reader = Schema::parse(&reader_json).map_err(|e| format!("event schema: {e}"))?;
        Ok(Decoder { registry, reader, reader_json, writers: HashMap::new() })
    }

    /// `Ok(Ok(payload))`, `Ok(Err(reason))` for a message to dead-letter, or `Err` when the
    /// registry is unreachable (retry later: the message is not at fault). A value written
    /// with the event schema itself comes back undecoded ([`Payload::Native`]), for
    /// [`pipeline_core::model::decode_avro_fields`] to read straight into columns.
    pub async fn resolve<'v>(&mut self, value: Option<&'v [u8]>) -> Result<Result<Payload<'v>, String>, RegistryError> {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(Err("empty value".into())) };
        let (id, payload) = match unframe(value) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if !self.writers.contains_key(&id) {
            let writer = match self.registry.schema_by_id(id).await {
                Ok(text) => match Schema::parse_str(&text) {
                    // The event schema itself (compared as JSON: Avro's canonical form drops
                    // logical types, and timestamp-millis must not pass for micros): no
                    // resolution needed.
                    Ok(_)
                        if serde_json::from_str::<serde_json::Value>(&text).ok().as_ref()
                            == Some(&self.reader_json) =>
                    {
                        Ok(None)
                    }
                    Ok(s) => Ok(Some(s)),
                    Err(e) => Err(format!("schema id {id} does not parse: {e}")),
                },
                Err(RegistryError::UnknownId(_)) => Err(format!("unknown schema id {id}")),
                Err(e) => return Err(e),
            };
            match &writer {
                Ok(None) => tracing::debug!(id, "writer schema is the event schema: decoding straight into columns"),
                Ok(Some(_)) => tracing::info!(id, "writer schema differs from the event schema: resolving each record"),
                Err(reason) => tracing::warn!(id, %reason, "writer schema unusable: its records are dead-lettered"),
            }
            self.writers.insert(id, writer);
        }
        let writer = match &self.writers[&id] {
            Ok(None) => return Ok(Ok(Payload::Native { schema_id: id, datum: payload })),
            Ok(Some(w)) => w,
            Err(reason) => return Ok(Err(reason.clone())),
        };
        let mut rest = payload;
        Ok(finish(id, apache_avro::from_avro_datum(writer, &mut rest, Some(&self.reader)), rest).map(Payload::Resolved))
    }

    /// Like [`Decoder::resolve`], with native payloads decoded by apache-avro too.
    pub async fn decode(&mut self, value: Option<&[u8]>) -> Result<Result<AvroValue, String>, RegistryError> {
        Ok(match self.resolve(value).await? {
            Ok(Payload::Native { schema_id, datum }) => {
                let mut rest = datum;
                finish(schema_id, apache_avro::from_avro_datum(&self.reader, &mut rest, None), rest)
            }
            Ok(Payload::Resolved(record)) => Ok(record),
            Err(reason) => Err(reason),
        })
    }
}

/// A framed value whose writer schema is known.
pub enum Payload<'v> {
    /// Written with the engine's event schema: the bare Avro datum.
    Native { schema_id: u32, datum: &'v [u8] },
    /// Written with another schema, decoded and resolved to the event schema.
    Resolved(AvroValue),
}

/// An apache-avro decoding outcome as a record or a dead-letter reason.
fn finish(id: u32, decoded: apache_avro::AvroResult<AvroValue>, rest: &[u8]) -> Result<AvroValue, String> {
    match decoded {
        Ok(_) if !rest.is_empty() => Err(format!("{} trailing byte(s) after the Avro record", rest.len())),
        Ok(record) => Ok(record),
        Err(e) => Err(undecodable(id, e)),
    }
}

/// The dead-letter reason of a payload that does not decode with its schema.
pub fn undecodable(id: u32, reason: impl std::fmt::Display) -> String {
    format!("undecodable Avro payload for schema id {id}: {reason}")
}
