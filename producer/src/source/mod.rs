//! Where users come from: the RandomUser HTTP API or the deterministic synthetic generator.
//!
//! Both sources yield users as JSON objects in the RandomUser v1.4 shape, so one normaliser
//! ([`crate::normalize`]) serves both.
//!
//! # Errors versus rejections
//!
//! A fetch only fails (`Err`) when going on would be pointless or unsafe:
//!
//! - [`SourceError::RetriesExhausted`]: a transport failure (timeout, connection error, HTTP 5xx
//!   or 429) persisted through every retry;
//! - [`SourceError::BodyTooLarge`]: a response body exceeded `max_body_bytes` (refused at once,
//!   not retried, and never buffered beyond the limit);
//! - [`SourceError::InvalidConfig`] / [`SourceError::Client`]: the source cannot be built.
//!
//! Everything else is a [`Rejected`] inside an `Ok(`[`Fetched`]`)` so that the run goes on and
//! the rejection is audited: a body that is not JSON, an API error object (`{"error": "..."}`)
//! with status 200, a body without a `results` array, an element of `results` that is not an
//! object, and an HTTP 4xx other than 429 (not retried; the remaining requests of that fetch are
//! skipped because they would be refused the same way).

pub mod randomuser;
pub mod synthetic;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::normalize::strip_credentials_everywhere;

/// Largest [`Rejected::payload`] kept, in bytes; longer payloads are truncated.
pub const MAX_REJECTED_PAYLOAD_BYTES: usize = 64 * 1024;

/// One fetch: the users as JSON objects exactly as the API shaped them, plus records rejected before normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Users as JSON objects, credentials included (normalisation strips them).
    pub users: Vec<Value>,
    /// Responses or records refused before normalisation.
    pub rejected: Vec<Rejected>,
    /// When the fetch completed.
    pub fetched_at: DateTime<Utc>,
}

/// A record or response refused with a reason; `payload` is the offending text with credential fields removed when it parsed as JSON (truncated to 64 KiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Short reason naming the field or the problem.
    pub reason: String,
    /// The offending text: re-serialised without credential fields if it was JSON, otherwise the
    /// raw text (invalid UTF-8 and NUL characters replaced by U+FFFD), at most
    /// [`MAX_REJECTED_PAYLOAD_BYTES`] bytes.
    pub payload: String,
}

impl Rejected {
    /// A rejection of some text (a response body, say).
    ///
    /// If `text` parses as JSON, every credential field ([`crate::normalize::CREDENTIAL_FIELDS`]) is
    /// removed wherever it appears and the payload is the re-serialised JSON; otherwise it is the
    /// text itself. Either way it is truncated to [`MAX_REJECTED_PAYLOAD_BYTES`].
    pub fn from_text(reason: impl Into<String>, text: &str) -> Self {
        let payload = match serde_json::from_str::<Value>(text) {
            Ok(mut value) => {
                strip_credentials_everywhere(&mut value);
                value.to_string()
            }
            Err(_) => text.replace('\0', "\u{FFFD}"),
        };
        Self { reason: reason.into(), payload: truncate_payload(payload) }
    }

    /// Like [`Rejected::from_text`] for raw bytes (invalid UTF-8 is replaced by U+FFFD).
    pub fn from_bytes(reason: impl Into<String>, bytes: &[u8]) -> Self {
        Self::from_text(reason, &String::from_utf8_lossy(bytes))
    }

    /// A rejection of a JSON value (a user record, say): credential fields are removed wherever
    /// they appear, then the value is serialised and truncated.
    pub fn from_value(reason: impl Into<String>, value: &Value) -> Self {
        let mut value = value.clone();
        strip_credentials_everywhere(&mut value);
        Self { reason: reason.into(), payload: truncate_payload(value.to_string()) }
    }
}

/// Cuts `payload` to at most [`MAX_REJECTED_PAYLOAD_BYTES`] on a character boundary, marking the cut.
fn truncate_payload(mut payload: String) -> String {
    if payload.len() <= MAX_REJECTED_PAYLOAD_BYTES {
        return payload;
    }
    let original = payload.len();
    let marker = format!("…[truncated, {original} bytes in all]");
    let mut cut = MAX_REJECTED_PAYLOAD_BYTES.saturating_sub(marker.len());
    while !payload.is_char_boundary(cut) {
        cut -= 1;
    }
    payload.truncate(cut);
    payload.push_str(&marker);
    payload
}

/// Why a fetch failed as a whole. See the [module documentation](self) for what is an error and
/// what is a [`Rejected`] record instead.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Every attempt failed with a retryable cause (timeout, connection error, HTTP 5xx or 429).
    #[error(
        "request to {url} failed after {attempts} attempt(s), last cause: {last_cause}; check that the RandomUser \
         API is reachable from here (base_url, proxy, firewall) or raise max_retries/backoff_max"
    )]
    RetriesExhausted {
        /// The request URL (with its query string).
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The cause of the last failure.
        last_cause: String,
    },
    /// The response body exceeded the configured limit and was refused.
    #[error(
        "response from {url} is larger than the limit of {limit} bytes (max_body_bytes); raise max_body_bytes \
         or lower max_results_per_request (a v1.4 user is about 1.2 KB)"
    )]
    BodyTooLarge {
        /// The request URL (with its query string).
        url: String,
        /// The configured `max_body_bytes`.
        limit: usize,
    },
    /// The source configuration cannot work.
    #[error("invalid source configuration: {0}")]
    InvalidConfig(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}; check the TLS setup of this host")]
    Client(#[source] reqwest::Error),
}

/// A configured source of users.
#[derive(Debug)]
pub enum Source {
    /// The RandomUser HTTP API.
    RandomUser(randomuser::RandomUserSource),
    /// The deterministic in-process generator.
    Synthetic(synthetic::SyntheticSource),
}

impl Source {
    /// The source name recorded in every event: `randomuser` or `synthetic`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::RandomUser(_) => randomuser::SOURCE_NAME,
            Source::Synthetic(_) => synthetic::SOURCE_NAME,
        }
    }

    /// Fetches `count` users (fewer if the API returns fewer or some are rejected).
    ///
    /// # Errors
    /// See [`SourceError`]: only transport failures that exhausted their retries, an oversized
    /// body, or an unusable configuration.
    pub async fn fetch(&mut self, count: usize) -> Result<Fetched, SourceError> {
        match self {
            Source::RandomUser(source) => source.fetch(count).await,
            Source::Synthetic(source) => Ok(source.fetch(count)),
        }
    }
}

impl From<randomuser::RandomUserSource> for Source {
    fn from(source: randomuser::RandomUserSource) -> Self {
        Source::RandomUser(source)
    }
}

impl From<synthetic::SyntheticSource> for Source {
    fn from(source: synthetic::SyntheticSource) -> Self {
        Source::Synthetic(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejected_text_strips_credentials_anywhere_when_json() {
        let text = r#"{"results": {"login": {"uuid": "u", "password": "hunter2", "sha256": "ab"}}, "salt": "x"}"#;
        let rejected = Rejected::from_text("response has no `results` array", text);
        assert!(!rejected.payload.contains("hunter2"));
        assert!(!rejected.payload.contains("sha256"));
        assert!(!rejected.payload.contains("salt"));
        assert!(rejected.payload.contains("\"uuid\""));
    }

    #[test]
    fn rejected_text_keeps_non_json_text_and_truncates() {
        let text = "é".repeat(MAX_REJECTED_PAYLOAD_BYTES);
        let rejected = Rejected::from_text("response is not valid JSON", &text);
        assert!(rejected.payload.len() <= MAX_REJECTED_PAYLOAD_BYTES);
        assert!(rejected.payload.ends_with(&format!("[truncated, {} bytes in all]", text.len())));
        assert_eq!(Rejected::from_bytes("r", b"ab\0\xff").payload, "ab\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn rejected_value_strips_credentials() {
        let user = json!({"login": {"uuid": "u", "username": "x", "password": "p", "md5": "m"}});
        let rejected = Rejected::from_value("email missing", &user);
        assert_eq!(rejected.payload, r#"{"login":{"username":"x","uuid":"u"}}"#);
    }

    #[tokio::test]
    async fn source_dispatches_to_synthetic() {
        let mut source = Source::from(synthetic::SyntheticSource::new(7));
        assert_eq!(source.name(), "synthetic");
        let fetched = source.fetch(3).await.unwrap();
        assert_eq!(fetched.users.len(), 3);
        assert!(fetched.rejected.is_empty());
    }
}
