//! Schema registry client (Confluent-compatible API) and the registry wire format.
//!
//! Wire format of a Kafka value: magic byte `0`, the schema id as 4 bytes big-endian, then the
//! Avro binary datum. The producer frames with [`frame`]; engines split with [`unframe`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Errors of the registry client; messages name the subject and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source} (is it running? `pipeline cluster up registry`)")]
    Unreachable { url: String, source: reqwest::Error },
    #[error(
        "schema for subject `{subject}` is incompatible with the registered versions under {level} compatibility: {reason}"
    )]
    Incompatible { subject: String, level: String, reason: String },
    #[error("schema registry answered {status} for {what}: {body}")]
    Http { what: String, status: u16, body: String },
    #[error("schema id {0} is unknown to the registry")]
    UnknownId(u32),
    #[error("subject `{0}` has no registered schema")]
    UnknownSubject(String),
    #[error("schema registry sent an unexpected answer for {what}: {detail}")]
    Protocol { what: String, detail: String },
}

impl RegistryError {
    /// True when retrying later can succeed (network trouble, server errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// A client of the Confluent-compatible API, with a cache of schemas by id.
#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    by_id: Arc<Mutex<HashMap<u32, Arc<str>>>>,
}

impl RegistryClient {
    /// The registry of the config, with its timeouts: the one way to build a client.
    pub fn from_config(c: &crate::config::RegistryConfig) -> Result<RegistryClient, RegistryError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(c.connect_timeout_ms))
            .timeout(Duration::from_millis(c.request_timeout_ms))
            .build()
            .map_err(|source| RegistryError::Unreachable { url: c.url.clone(), source })?;
        Ok(RegistryClient { base: c.url.trim_end_matches('/').to_string(), http, by_id: Arc::default() })
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<(u16, Value), RegistryError> {
        let resp = req.send().await.map_err(|source| RegistryError::Unreachable { url: self.base.clone(), source })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| RegistryError::Unreachable { url: self.base.clone(), source })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) || status == 404 || status == 409 || status == 422 {
            Ok((status, body))
        } else {
            Err(RegistryError::Http { what: what.to_string(), status, body: body.to_string() })
        }
    }

    /// Sets the compatibility level of a subject (e.g. BACKWARD).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let what = format!("setting {level} compatibility on `{subject}`");
        let req = self
            .http
            .put(format!("{}/config/{subject}", self.base))
            .header("Content-Type", CONTENT_TYPE)
            .json(&json!({ "compatibility": level }));
        match self.send(&what, req).await? {
            (s, _) if (200..300).contains(&s) => Ok(()),
            (status, body) => Err(RegistryError::Http { what, status, body: body.to_string() }),
        }
    }

    /// The compatibility level of a subject, if one is set.
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        let what = format!("compatibility of `{subject}`");
        let (status, body) = self.send(&what, self.http.get(format!("{}/config/{subject}", self.base))).await?;
        if status == 404 {
            return Ok(None);
        }
        Ok(body
            .get("compatibilityLevel")
            .or_else(|| body.get("compatibility"))
            .and_then(Value::as_str)
            .map(String::from))
    }

    /// Registers an Avro schema under `subject` (idempotent: an identical schema keeps its id).
    /// An incompatible schema is refused with [`RegistryError::Incompatible`].
    pub async fn register(&self, subject: &str, schema: &Value) -> Result<u32, RegistryError> {
        let what = format!("registering a schema under `{subject}`");
        let text = schema.to_string();
        let req = self
            .http
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("Content-Type", CONTENT_TYPE)
            .json(&json!({ "schema": text, "schemaType": "AVRO" }));
        let (status, body) = self.send(&what, req).await?;
        match status {
            s if (200..300).contains(&s) => {
                let id = body_id(&body).ok_or_else(|| RegistryError::Protocol { what, detail: body.to_string() })?;
                self.remember(id, text.into());
                Ok(id)
            }
            409 | 422 => {
                let level = self.compatibility(subject).await.ok().flatten().unwrap_or_else(|| "the subject's".into());
                let reason = body.get("message").and_then(Value::as_str).map(String::from).unwrap_or(body.to_string());
                Err(RegistryError::Incompatible { subject: subject.to_string(), level, reason })
            }
            _ => Err(RegistryError::Http { what, status, body: body.to_string() }),
        }
    }

    /// The schema text registered under `id` (cached after the first call).
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<str>, RegistryError> {
        if let Some(s) = self.by_id.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(s);
        }
        let what = format!("schema id {id}");
        let (status, body) = self.send(&what, self.http.get(format!("{}/schemas/ids/{id}", self.base))).await?;
        if status == 404 {
            return Err(RegistryError::UnknownId(id));
        }
        let text = schema_text(&body, what)?;
        self.remember(id, text.clone());
        Ok(text)
    }

    /// The latest schema of a subject: (id, schema text).
    pub async fn latest(&self, subject: &str) -> Result<(u32, Arc<str>), RegistryError> {
        let what = format!("latest schema of `{subject}`");
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        let (status, body) = self.send(&what, self.http.get(url)).await?;
        if status == 404 {
            return Err(RegistryError::UnknownSubject(subject.to_string()));
        }
        let id =
            body_id(&body).ok_or_else(|| RegistryError::Protocol { what: what.clone(), detail: body.to_string() })?;
        let text = schema_text(&body, what)?;
        self.remember(id, text.clone());
        Ok((id, text))
    }

    /// Every version of a subject, oldest first: (version, id, schema text).
    pub async fn versions(&self, subject: &str) -> Result<Vec<(u32, u32, Arc<str>)>, RegistryError> {
        let what = format!("versions of `{subject}`");
        let (status, body) =
            self.send(&what, self.http.get(format!("{}/subjects/{subject}/versions", self.base))).await?;
        if status == 404 {
            return Err(RegistryError::UnknownSubject(subject.to_string()));
        }
        let numbers: Vec<u32> = body
            .as_array()
            .ok_or_else(|| RegistryError::Protocol { what: what.clone(), detail: body.to_string() })?
            .iter()
            .filter_map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect();
        let mut out = Vec::with_capacity(numbers.len());
        for version in numbers {
            let what = format!("version {version} of `{subject}`");
            let url = format!("{}/subjects/{subject}/versions/{version}", self.base);
            let (status, body) = self.send(&what, self.http.get(url)).await?;
            if status == 404 {
                continue; // deleted between the two calls
            }
            let id = body_id(&body)
                .ok_or_else(|| RegistryError::Protocol { what: what.clone(), detail: body.to_string() })?;
            let text = schema_text(&body, what)?;
            self.remember(id, text.clone());
            out.push((version, id, text));
        }
        out.sort_by_key(|(version, _, _)| *version);
        Ok(out)
    }

    /// True when the registry has a schema under `id`.
    pub async fn has_id(&self, id: u32) -> Result<bool, RegistryError> {
        match self.schema_by_id(id).await {
            Ok(_) => Ok(true),
            Err(RegistryError::UnknownId(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn remember(&self, id: u32, text: Arc<str>) {
        if let Ok(mut m) = self.by_id.lock() {
            m.insert(id, text);
        }
    }
}

/// The `schema` field of an answer.
fn schema_text(body: &Value, what: String) -> Result<Arc<str>, RegistryError> {
    body.get("schema")
        .and_then(Value::as_str)
        .map(Arc::from)
        .ok_or_else(|| RegistryError::Protocol { what, detail: body.to_string() })
}

fn body_id(body: &Value) -> Option<u32> {
    body.get("id").and_then(Value::as_u64).and_then(|id| u32::try_from(id).ok())
}

/// Why a Kafka value is not in the registry wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty value")]
    Empty,
    #[error("not registry-framed: first byte is {0:#04x}, expected the magic byte 0x00")]
    BadMagic(u8),
    #[error("truncated registry header: {0} byte(s), need at least 5")]
    Truncated(usize),
}

/// Size of the registry header (magic byte + schema id).
pub const WIRE_HEADER_LEN: usize = 5;

/// Frames an encoded payload: magic byte, schema id (big-endian), payload.
pub fn frame(schema_id: u32, payload: &[u8]) -> Vec<u8> {
    frame_with(schema_id, payload.len(), |out| out.extend_from_slice(payload))
}

/// Like [`frame`], with the payload written by `write` straight after the header (no copy).
pub fn frame_with(schema_id: u32, capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(WIRE_HEADER_LEN + capacity);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    write(&mut out);
    out
}

/// Splits a framed value into (schema id, payload).
pub fn unframe(value: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match value {
        [] => Err(WireError::Empty),
        [m, ..] if *m != 0 => Err(WireError::BadMagic(*m)),
        v if v.len() < WIRE_HEADER_LEN => Err(WireError::Truncated(v.len())),
        [_, a, b, c, d, payload @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), payload)),
        _ => Err(WireError::Truncated(value.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_unframe_roundtrip() {
        let framed = frame(0x0102_0304, b"avro");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'a', b'v', b'r', b'o']);
        assert_eq!(unframe(&framed), Ok((0x0102_0304, &b"avro"[..])));
    }

    #[test]
    fn malformed_values_are_named() {
        assert_eq!(unframe(&[]), Err(WireError::Empty));
        assert_eq!(unframe(b"{\"json\":1}"), Err(WireError::BadMagic(b'{')));
        assert_eq!(unframe(&[0, 0, 1]), Err(WireError::Truncated(3)));
        assert_eq!(unframe(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
    }
}
