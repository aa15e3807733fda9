//! The dead-letter topic: reading it, `pipeline dlq list` and `pipeline dlq replay`.
//!
//! Both engines dead-letter a refused record with its original key and bytes and three headers:
//! [`REASON_HEADER`] (why), [`ENGINE_HEADER`] (`spark` or `datafusion`) and
//! [`SOURCE_OFFSET_HEADER`] (`partition:offset` on the events topic). [`list`] groups the dead
//! letters by reason and engine; [`replay::replay`] republishes them to the events topic once
//! their cause is fixed, recording each in the [`ledger`] so that none is replayed twice.

pub mod ledger;
pub mod replay;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use pipeline_core::Config;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::scan::{scan, ScanError, Scanned};

pub use replay::{parse_since, replay, ReplayOptions, ReplaySummary};

/// A point in time (what `--since` parses to).
pub type Time = DateTime<Utc>;

/// The current time, for [`parse_since`].
pub fn now() -> Time {
    Utc::now()
}

/// Why the engine refused the record.
pub const REASON_HEADER: &str = "reason";
/// Which engine refused it: `spark` or `datafusion`.
pub const ENGINE_HEADER: &str = "engine";
/// Where the refused record was on the events topic, `partition:offset`.
pub const SOURCE_OFFSET_HEADER: &str = "source_offset";
/// Set on a replayed record: the dead letter it came from, `dlq_topic:partition:offset`.
pub const REPLAY_HEADER: &str = "dlq_replay";

/// The reason shown for a dead letter without a reason header (not written by an engine).
pub const NO_REASON: &str = "(no reason header)";

/// How many sample records each group of [`list`] keeps.
pub const LIST_SAMPLES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Postgres(#[from] pipeline_core::postgres::PgConnectError),
    #[error("PostgreSQL {what} failed: {source}")]
    Query { what: &'static str, source: tokio_postgres::Error },
    #[error("another replay of `{topic}` is running (wait for it to finish)")]
    Busy { topic: String },
    #[error("Kafka at {bootstrap}: creating the replay producer failed: {reason} (is it running? `pipeline cluster up kafka`)")]
    Producer { bootstrap: String, reason: String },
    #[error("{failed} replayed record(s) could not be delivered to `{topic}`: {first}; {recorded} delivered ones were recorded (run the replay again: it skips them)")]
    Delivery { failed: usize, topic: String, first: String, recorded: usize },
}

/// One record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp (when it was dead-lettered).
    pub timestamp: Option<DateTime<Utc>>,
    pub key: Option<Vec<u8>>,
    /// The original bytes (`None` when read without values, or for a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record has no value.
    pub tombstone: bool,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn from_message(m: &BorrowedMessage<'_>, keep_value: bool) -> DeadLetter {
        DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis().and_then(DateTime::from_timestamp_millis),
            key: m.key().map(<[u8]>::to_vec),
            value: if keep_value { m.payload().map(<[u8]>::to_vec) } else { None },
            tombstone: m.payload().is_none(),
            headers: m
                .headers()
                .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default(),
        }
    }

    /// The first header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The reason header, or [`NO_REASON`].
    pub fn reason(&self) -> String {
        self.header(REASON_HEADER).unwrap_or_else(|| NO_REASON.to_string())
    }

    /// The engine header, or `unknown`.
    pub fn engine(&self) -> String {
        self.header(ENGINE_HEADER).unwrap_or_else(|| "unknown".to_string())
    }

    /// The key as text (lossy), if any.
    pub fn key_str(&self) -> Option<String> {
        self.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The key, when it is a UUID (a user id).
    pub fn id(&self) -> Option<Uuid> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| Uuid::try_parse(k).ok())
    }
}

/// Every record of the dead-letter topic (`kafka.dead_letter_topic`), in partition and offset
/// order; values are kept only when `with_values`. A missing topic reads as empty.
pub async fn read(config: &Config, with_values: bool) -> Result<(Scanned, Vec<DeadLetter>), ScanError> {
    let (scanned, mut all) = scan(
        &config.kafka.bootstrap_servers,
        &config.kafka.dead_letter_topic,
        false,
        Vec::new(),
        move |out: &mut Vec<DeadLetter>, m| out.push(DeadLetter::from_message(m, with_values)),
    )
    .await?;
    all.sort_by_key(|d| (d.partition, d.offset));
    Ok((scanned, all))
}

/// One dead letter as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub time: Option<DateTime<Utc>>,
}

/// The dead letters of one reason from one engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListGroup {
    pub reason: String,
    pub engine: String,
    /// Dead letters in the group.
    pub count: u64,
    /// Of those, the ones whose key is a user audited for `kafka.topic` (what `verify` calls
    /// "audited, refused by an engine" until they reach Cassandra).
    pub audited: u64,
    /// Of those, the ones already replayed.
    pub replayed: u64,
    /// The first few, in partition and offset order.
    pub samples: Vec<Sample>,
}

/// What `pipeline dlq list` shows (and prints as JSON with `--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub dead_letter_topic: String,
    /// Whether the dead-letter topic exists.
    pub exists: bool,
    pub records: u64,
    pub replayed: u64,
    /// Largest groups first.
    pub groups: Vec<ListGroup>,
}

/// Groups the dead letters by reason and engine, with counts of audited and replayed ones.
/// Read-only (the replay ledger is not created if it does not exist).
pub async fn list(config: &Config) -> Result<Listing, DlqError> {
    let (scanned, dead) = read(config, false).await?;
    let client = pipeline_core::postgres::connect(&config.postgres, "pipeline-dlq").await?;
    let replayed = ledger::replayed(&client, &config.kafka.dead_letter_topic).await?;
    let ids: Vec<Uuid> = dead.iter().filter_map(DeadLetter::id).collect::<HashSet<_>>().into_iter().collect();
    let audited = ledger::audited(&client, &config.kafka.topic, &ids).await?;
    Ok(listing(&config.kafka.dead_letter_topic, scanned.exists, &dead, &audited, &replayed))
}

/// The grouping of [`list`]. Pure.
pub fn listing(
    topic: &str,
    exists: bool,
    dead: &[DeadLetter],
    audited: &HashSet<Uuid>,
    replayed: &HashSet<(i32, i64)>,
) -> Listing {
    let mut groups: BTreeMap<(String, String), ListGroup> = BTreeMap::new();
    for d in dead {
        let (reason, engine) = (d.reason(), d.engine());
        let g = groups.entry((reason.clone(), engine.clone())).or_insert_with(|| ListGroup {
            reason,
            engine,
            count: 0,
            audited: 0,
            replayed: 0,
            samples: Vec::new(),
        });
        g.count += 1;
        g.audited += u64::from(d.id().is_some_and(|id| audited.contains(&id)));
        g.replayed += u64::from(replayed.contains(&(d.partition, d.offset)));
        if g.samples.len() < LIST_SAMPLES {
            g.samples.push(Sample { partition: d.partition, offset: d.offset, key: d.key_str(), time: d.timestamp });
        }
    }
    let mut groups: Vec<ListGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    Listing {
        dead_letter_topic: topic.to_string(),
        exists,
        records: dead.len() as u64,
        replayed: dead.iter().filter(|d| replayed.contains(&(d.partition, d.offset))).count() as u64,
        groups,
    }
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.exists {
            return write!(f, "dead-letter topic {} does not exist: no dead letters", self.dead_letter_topic);
        }
        writeln!(f, "{}: {} dead letter(s), {} replayed", self.dead_letter_topic, self.records, self.replayed)?;
        for g in &self.groups {
            writeln!(f)?;
            writeln!(f, "{:>7} x {} [{}]", g.count, g.reason, g.engine)?;
            writeln!(f, "          {} audited user(s), {} replayed", g.audited, g.replayed)?;
            for s in &g.samples {
                let time = s.time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                writeln!(
                    f,
                    "          partition {} offset {} key {} at {}",
                    s.partition,
                    s.offset,
                    s.key.as_deref().unwrap_or("(null)"),
                    time.as_deref().unwrap_or("?")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn dead(offset: i64, key: Option<&str>, reason: Option<&str>, engine: &str) -> DeadLetter {
        let mut headers = vec![(ENGINE_HEADER.to_string(), Some(engine.as_bytes().to_vec()))];
        if let Some(r) = reason {
            headers.insert(0, (REASON_HEADER.to_string(), Some(r.as_bytes().to_vec())));
        }
        DeadLetter {
            partition: 0,
            offset,
            timestamp: DateTime::from_timestamp_millis(1_000 * offset),
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(vec![0, 0, 0, 0, 1, 2]),
            tombstone: false,
            headers,
        }
    }

    #[test]
    fn listing_groups_by_reason_and_engine() {
        let id = Uuid::new_v4();
        let dead = vec![
            dead(0, Some(&id.to_string()), Some("undecodable"), "spark"),
            dead(1, Some("junk"), Some("not registry-framed"), "datafusion"),
            dead(2, None, Some("not registry-framed"), "datafusion"),
            dead(3, None, None, "datafusion"),
        ];
        let l = listing("t.dlq", true, &dead, &HashSet::from([id]), &HashSet::from([(0, 0)]));
        assert_eq!((l.records, l.replayed, l.groups.len()), (4, 1, 3));
        assert_eq!((l.groups[0].reason.as_str(), l.groups[0].count), ("not registry-framed", 2));
        assert_eq!(l.groups[0].samples[1].key, None);
        let spark = l.groups.iter().find(|g| g.engine == "spark").expect("spark group");
        assert_eq!((spark.audited, spark.replayed), (1, 1));
        assert!(l.groups.iter().any(|g| g.reason == NO_REASON));
        let text = l.to_string();
        assert!(text.contains("2 x not registry-framed [datafusion]"), "{text}");
        assert!(text.contains("key (null)"), "{text}");
    }
}
