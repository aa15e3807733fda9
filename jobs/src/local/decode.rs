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
    /// Writer schemas by id; `Err` caches "unknown id" and "does not parse" answers.
    writers: HashMap<u32, Result<Option<Schema>, String>>,
}

impl Decoder {
    pub fn new(registry: RegistryClient) -> Result<Decoder, String> {
        let reader = Schema::parse(&event_avro_schema()).map_err(|e| format!("event schema: {e}"))?;
        Ok(Decoder { registry, reader, writers: HashMap::new() })
    }

    /// `Ok(Ok(record))`, `Ok(Err(reason))` for a message to dead-letter, or `Err` when the
    /// registry is unreachable (retry later: the message is not at fault).
    pub async fn decode(&mut self, value: Option<&[u8]>) -> Result<Result<AvroValue, String>, RegistryError> {
        let Some(value) = value else { return Ok(Err("empty value".into())) };
        let (id, payload) = match unframe(value) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if !self.writers.contains_key(&id) {
            let writer = match self.registry.schema_by_id(id).await {
                Ok(text) => match Schema::parse_str(&text) {
                    // Same schema as the reader: decode without resolution (faster).
                    Ok(s) if s.canonical_form() == self.reader.canonical_form() => Ok(None),
                    Ok(s) => Ok(Some(s)),
                    Err(e) => Err(format!("schema id {id} does not parse: {e}")),
                },
                Err(RegistryError::UnknownId(_)) => Err(format!("unknown schema id {id}")),
                Err(e) => return Err(e),
            };
            self.writers.insert(id, writer);
        }
        let writer = match &self.writers[&id] {
            Ok(w) => w.as_ref(),
            Err(reason) => return Ok(Err(reason.clone())),
        };
        let mut rest = payload;
        let decoded = match writer {
            None => apache_avro::from_avro_datum(&self.reader, &mut rest, None),
            Some(w) => apache_avro::from_avro_datum(w, &mut rest, Some(&self.reader)),
        };
        Ok(match decoded {
            Ok(_) if !rest.is_empty() => Err(format!("{} trailing byte(s) after the Avro record", rest.len())),
            Ok(record) => Ok(record),
            Err(e) => Err(format!("undecodable Avro payload for schema id {id}: {e}")),
        })
    }
}
