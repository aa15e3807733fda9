//! `pipeline verify --json`: the report as one JSON document for the dashboard and Airflow.
//!
//! The field names are stable; a change that removes or renames one bumps
//! [`SCHEMA_VERSION`] (adding a field does not). Id lists are samples (at most
//! [`SAMPLE_SIZE`](super::SAMPLE_SIZE) each) next to their full count. Example (abridged):
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "status": "failed",
//!   "failures": ["refused"],
//!   "topic": "users_created", "dead_letter_topic": "users_created.dlq",
//!   "table": "spark_streams.created_users",
//!   "counts": { "audited": 100, "audited_unpublished": 0, "kafka_records": 100, ... },
//!   "lost": {
//!     "audited_not_in_kafka": { "count": 0, "sample_ids": [] },
//!     "audited_not_in_kafka_unpublished": 0,
//!     "kafka_not_in_cassandra": { "count": 0, "sample_ids": [] }
//!   },
//!   "refused_audited": {
//!     "count": 100,
//!     "reasons": [{ "reason": "undecodable Avro payload ...", "engines": ["spark"],
//!                   "count": 100, "samples": ["0a1b..."] }]
//!   },
//!   "dead_letters_unaudited": { "count": 2, "reasons": [...] },
//!   "dead_lettered_since_written": { "count": 0, "sample_ids": [] },
//!   "not_audited": { "kafka": {...}, "cassandra": {...} },
//!   "notes": { "dead_letter_topic_missing": false, "kafka_truncated": false }
//! }
//! ```
//!
//! `status` is `"ok"` or `"failed"`; `failures` lists `"lost"` and/or `"refused"` (empty when
//! ok). `refused_audited.reasons[].samples` are user ids; `dead_letters_unaudited.reasons[]`
//! count records and sample their keys (`"(null key)"` for none).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Report, SAMPLE_SIZE};

/// Bumped when a field is removed or renamed.
pub const SCHEMA_VERSION: u32 = 1;

/// Dead letters of one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonGroup {
    /// The dead letters' `reason` header.
    pub reason: String,
    /// The `engine` headers seen (`spark`, `datafusion`), sorted.
    pub engines: Vec<String>,
    /// Ids (refused audited users) or records (unaudited dead letters).
    pub count: u64,
    /// Sample ids or keys.
    pub samples: Vec<String>,
}

/// A set of ids: its size and a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdSample {
    pub count: u64,
    pub sample_ids: Vec<Uuid>,
}

impl IdSample {
    fn of(ids: &[Uuid]) -> IdSample {
        IdSample { count: ids.len() as u64, sample_ids: ids.iter().take(SAMPLE_SIZE).copied().collect() }
    }
}

/// Counts per stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub audited: u64,
    pub audited_unpublished: u64,
    pub kafka_records: u64,
    pub kafka_distinct_keys: u64,
    pub kafka_non_uuid_keys: u64,
    pub kafka_null_keys: u64,
    pub kafka_tombstones: u64,
    pub dead_letter_records: u64,
    pub dead_letter_distinct_keys: u64,
    pub cassandra_rows: u64,
}

/// Losses: each makes `status` failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub audited_not_in_kafka: IdSample,
    /// Of `audited_not_in_kafka`, those still in the outbox.
    pub audited_not_in_kafka_unpublished: u64,
    pub kafka_not_in_cassandra: IdSample,
}

/// Dead letters grouped by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterGroups {
    pub count: u64,
    pub reasons: Vec<ReasonGroup>,
}

/// Rows written around the producer (not failures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotAudited {
    pub kafka: IdSample,
    pub cassandra: IdSample,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notes {
    pub dead_letter_topic_missing: bool,
    pub kafka_truncated: bool,
}

/// `ok` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// Audited ids missing from Kafka, or Kafka ids missing from Cassandra.
    Lost,
    /// Audited ids refused by an engine.
    Refused,
}

/// The JSON document of `pipeline verify --json`. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyJson {
    pub schema_version: u32,
    pub status: Status,
    pub failures: Vec<Failure>,
    pub topic: String,
    pub dead_letter_topic: String,
    pub table: String,
    pub counts: Counts,
    pub lost: Lost,
    /// Audited users dead-lettered and not in Cassandra: a failure.
    pub refused_audited: DeadLetterGroups,
    /// Dead letters of input that was never audited: reported, not a failure.
    pub dead_letters_unaudited: DeadLetterGroups,
    /// Audited users dead-lettered once and in Cassandra since (replayed).
    pub dead_lettered_since_written: IdSample,
    pub not_audited: NotAudited,
    pub notes: Notes,
}

impl From<&Report> for VerifyJson {
    fn from(r: &Report) -> VerifyJson {
        let mut failures = Vec::new();
        if r.lost() {
            failures.push(Failure::Lost);
        }
        if r.refused() {
            failures.push(Failure::Refused);
        }
        VerifyJson {
            schema_version: SCHEMA_VERSION,
            status: if failures.is_empty() { Status::Ok } else { Status::Failed },
            failures,
            topic: r.topic.clone(),
            dead_letter_topic: r.dead_letter_topic.clone(),
            table: r.table.clone(),
            counts: Counts {
                audited: r.audited,
                audited_unpublished: r.audited_unpublished,
                kafka_records: r.kafka.records,
                kafka_distinct_keys: r.kafka.distinct_keys,
                kafka_non_uuid_keys: r.kafka.non_uuid_keys,
                kafka_null_keys: r.kafka.null_keys,
                kafka_tombstones: r.kafka.tombstones,
                dead_letter_records: r.dead_letters.records,
                dead_letter_distinct_keys: r.dead_letters.distinct_keys,
                cassandra_rows: r.cassandra_rows,
            },
            lost: Lost {
                audited_not_in_kafka: IdSample::of(&r.diff.audited_not_in_kafka),
                audited_not_in_kafka_unpublished: r.missing_unpublished,
                kafka_not_in_cassandra: IdSample::of(&r.diff.kafka_not_in_cassandra),
            },
            refused_audited: DeadLetterGroups {
                count: r.diff.refused_audited.len() as u64,
                reasons: r.refused_reasons.clone(),
            },
            dead_letters_unaudited: DeadLetterGroups {
                count: r.unaudited_dead_letters,
                reasons: r.unaudited_reasons.clone(),
            },
            dead_lettered_since_written: IdSample::of(&r.diff.dead_lettered_since_written),
            not_audited: NotAudited {
                kafka: IdSample::of(&r.diff.kafka_not_audited),
                cassandra: IdSample::of(&r.diff.cassandra_not_audited),
            },
            notes: Notes { dead_letter_topic_missing: !r.dead_letters.exists, kafka_truncated: r.kafka.truncated },
        }
    }
}

impl Report {
    /// The report as the stable JSON document of `pipeline verify --json`.
    pub fn to_json(&self) -> VerifyJson {
        VerifyJson::from(self)
    }
}
