//! `pipeline verify`: reconciles the audit store, the Kafka topic and Cassandra.
//!
//! Every user the producer accepts is audited in PostgreSQL (`audit.users_raw`), published to
//! `kafka.topic` with its id as key, and written by the job to
//! `cassandra.keyspace`.`cassandra.table` (or dead-lettered to `kafka.dead_letter_topic` with the
//! same key). [`verify`] collects the ids of each stage and [`reconcile`] compares them:
//!
//! - audited but not in Kafka: lost between the outbox and the broker (or still in the outbox);
//! - in Kafka but neither in Cassandra nor dead-lettered: lost by the job (or not processed yet);
//! - in Kafka and dead-lettered: rejected by the job, with a reason header, not a loss;
//! - in Kafka but not audited, in Cassandra but not audited: written around the producer (tests,
//!   manual sends); reported, not a loss.
//!
//! The stages are read in pipeline order (audit, topic, table, dead letters), so on a live
//! pipeline each later snapshot already holds what the earlier one saw, give or take the job's
//! lag. Everything is read into memory and Cassandra is read with a full-table scan: this is a
//! development tool for tables of up to a few million rows, not a production auditor.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use uuid::Uuid;

/// How many ids of each difference [`Report`]'s `Display` prints.
pub const SAMPLE_SIZE: usize = 10;

/// Upper bound on reading one topic from its low to its high watermarks.
pub const KAFKA_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Timeout of one Kafka metadata or watermark request.
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a verification could not run; each message names the service and what to try.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Postgres(#[from] pipeline_core::postgres::PgConnectError),
    #[error("PostgreSQL: reading audit.users failed: {source} (if the table does not exist, nothing was ever produced into this database: `pipeline produce` creates it)")]
    PostgresQuery { source: tokio_postgres::Error },
    #[error("Kafka at {bootstrap}: {what} failed: {reason} (is it running? `pipeline cluster up kafka`)")]
    Kafka { bootstrap: String, what: String, reason: String },
    #[error("Kafka topic `{topic}` does not exist at {bootstrap} (check kafka.topic in the configuration; `pipeline cluster up kafka` creates it)")]
    TopicMissing { topic: String, bootstrap: String },
    #[error("Kafka at {bootstrap}: read {read} of about {expected} records of `{topic}` within {} s (is the broker overloaded? check `pipeline cluster status` and retry)", .timeout.as_secs())]
    KafkaTimeout { bootstrap: String, topic: String, read: u64, expected: u64, timeout: Duration },
    #[error(
        "cannot connect to Cassandra at {contact_points}: {reason} (is it running? `pipeline cluster up cassandra`)"
    )]
    CassandraConnect { contact_points: String, reason: String },
    #[error("Cassandra: scanning {keyspace}.{table} failed: {reason} (if the table does not exist, the job never ran with this configuration: `pipeline submit` creates it)")]
    CassandraQuery { keyspace: String, table: String, reason: String },
    #[error("the Kafka reader task for `{topic}` failed: {reason} (internal error; please report it)")]
    Join { topic: String, reason: String },
}

/// What one Kafka topic held between its low and high watermarks when it was read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicCounts {
    /// Whether the topic exists ([`verify`] fails on a missing events topic; a missing
    /// dead-letter topic counts as empty).
    pub exists: bool,
    /// Records read, whatever their key and value.
    pub records: u64,
    /// Distinct keys that parse as UUIDs.
    pub distinct_keys: u64,
    /// Records whose key is not a UUID.
    pub non_uuid_keys: u64,
    /// Records without a key.
    pub null_keys: u64,
    /// Records without a value (tombstones), whatever their key.
    pub tombstones: u64,
    /// Some partition no longer starts at offset 0: older records were deleted (retention),
    /// so their ids cannot be checked.
    pub truncated: bool,
}

/// The set differences between the stages, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Audited ids absent from the topic: lost before or by the broker, or still in the outbox.
    pub audited_not_in_kafka: Vec<Uuid>,
    /// Ids on the topic neither in Cassandra nor dead-lettered: lost by the job, or not
    /// processed yet.
    pub kafka_not_in_cassandra: Vec<Uuid>,
    /// Ids on the topic, not in Cassandra, whose key is on the dead-letter topic: rejected by
    /// the job, not lost.
    pub dead_lettered: Vec<Uuid>,
    /// Rows in Cassandra without an audit row (written by tests or by hand); not a loss.
    pub cassandra_not_audited: Vec<Uuid>,
    /// Ids on the topic without an audit row (sent around the producer); not a loss.
    pub kafka_not_audited: Vec<Uuid>,
}

impl Reconciliation {
    /// Any audited id missing from Kafka, or any Kafka id missing from Cassandra (and not
    /// dead-lettered).
    pub fn lost(&self) -> bool {
        !self.audited_not_in_kafka.is_empty() || !self.kafka_not_in_cassandra.is_empty()
    }
}

/// Compares the ids of each stage. Pure: the whole reconciliation logic of `pipeline verify`.
pub fn reconcile(
    audited: &HashSet<Uuid>,
    kafka: &HashSet<Uuid>,
    cassandra: &HashSet<Uuid>,
    dead_lettered: &HashSet<Uuid>,
) -> Reconciliation {
    fn sorted<'a>(ids: impl Iterator<Item = &'a Uuid>) -> Vec<Uuid> {
        let mut v: Vec<Uuid> = ids.copied().collect();
        v.sort_unstable();
        v
    }
    let (dead, missing): (Vec<Uuid>, Vec<Uuid>) =
        kafka.difference(cassandra).partition(|id| dead_lettered.contains(id));
    Reconciliation {
        audited_not_in_kafka: sorted(audited.difference(kafka)),
        kafka_not_in_cassandra: sorted(missing.iter()),
        dead_lettered: sorted(dead.iter()),
        cassandra_not_audited: sorted(cassandra.difference(audited)),
        kafka_not_audited: sorted(kafka.difference(audited)),
    }
}

/// The outcome of [`verify`]: counts per stage and the differences between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The events topic read.
    pub topic: String,
    /// The dead-letter topic read.
    pub dead_letter_topic: String,
    /// `keyspace.table` scanned.
    pub table: String,
    /// Rows of `audit.users_raw` for the topic.
    pub audited: u64,
    /// Of those, rows not marked published (still in the outbox).
    pub audited_unpublished: u64,
    /// Of [`Reconciliation::audited_not_in_kafka`], the ids still unpublished in the outbox
    /// (the producer publishes them on its next start); the rest were marked published.
    pub missing_unpublished: u64,
    /// The events topic.
    pub kafka: TopicCounts,
    /// The dead-letter topic.
    pub dead_letters: TopicCounts,
    /// Rows in the Cassandra table.
    pub cassandra_rows: u64,
    /// The differences.
    pub diff: Reconciliation,
}

impl Report {
    /// Any audited id missing from Kafka, or any Kafka id missing from Cassandra and not
    /// dead-lettered. See [`Reconciliation::lost`].
    pub fn lost(&self) -> bool {
        self.diff.lost()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const W: usize = 44;
        let k = &self.kafka;
        let d = &self.dead_letters;
        writeln!(f, "topic {}, dead letters {}, table {}", self.topic, self.dead_letter_topic, self.table)?;
        writeln!(f)?;
        writeln!(f, "{:<W$} {:>9}", "stage", "count")?;
        let counts: [(&str, u64); 11] = [
            ("audited in PostgreSQL", self.audited),
            ("  not yet published (outbox)", self.audited_unpublished),
            ("Kafka records", k.records),
            ("  distinct UUID keys", k.distinct_keys),
            ("  keys that are not UUIDs", k.non_uuid_keys),
            ("  null keys", k.null_keys),
            ("  tombstones (null value)", k.tombstones),
            ("dead-letter records", d.records),
            ("  distinct UUID keys", d.distinct_keys),
            ("  keys that are not UUIDs or null", d.non_uuid_keys + d.null_keys),
            ("rows in Cassandra", self.cassandra_rows),
        ];
        for (label, n) in counts {
            writeln!(f, "{label:<W$} {n:>9}")?;
        }
        writeln!(f)?;
        writeln!(f, "{:<W$} {:>9}", "difference", "count")?;
        let audited_missing = if self.missing_unpublished > 0 {
            format!("audited, not in Kafka ({} unpublished)", self.missing_unpublished)
        } else {
            "audited, not in Kafka".to_string()
        };
        let diffs: [(&str, &[Uuid], &str); 5] = [
            (&audited_missing, &self.diff.audited_not_in_kafka, "LOST"),
            ("in Kafka, not in Cassandra", &self.diff.kafka_not_in_cassandra, "LOST"),
            ("in Kafka, dead-lettered", &self.diff.dead_lettered, ""),
            ("in Kafka, not audited", &self.diff.kafka_not_audited, ""),
            ("in Cassandra, not audited", &self.diff.cassandra_not_audited, ""),
        ];
        for (label, ids, flag) in diffs {
            if ids.is_empty() || flag.is_empty() {
                writeln!(f, "{label:<W$} {:>9}", ids.len())?;
            } else {
                writeln!(f, "{label:<W$} {:>9}  {flag}", ids.len())?;
            }
            for id in ids.iter().take(SAMPLE_SIZE) {
                writeln!(f, "    {id}")?;
            }
            if ids.len() > SAMPLE_SIZE {
                writeln!(f, "    ... and {} more", ids.len() - SAMPLE_SIZE)?;
            }
        }
        writeln!(f)?;
        if !d.exists {
            writeln!(f, "note: dead-letter topic {} does not exist (read as empty)", self.dead_letter_topic)?;
        }
        if k.truncated {
            writeln!(f, "note: {} no longer starts at offset 0 (retention); older ids cannot be checked", self.topic)?;
        }
        if self.lost() {
            if !self.diff.kafka_not_in_cassandra.is_empty() {
                writeln!(f, "note: if the job is still catching up (`pipeline jobs status`), run verify again later")?;
            }
            if self.missing_unpublished > 0 {
                writeln!(f, "note: unpublished ids are published by the producer's outbox on its next start")?;
            }
            write!(f, "result: LOST")
        } else {
            write!(f, "result: OK, nothing lost")
        }
    }
}

/// Reads the three stages and reconciles them. Read-only: no migrations, no consumer-group
/// commits, no writes.
///
/// Order: audit rows for `kafka.topic`, then the topic up to its current high watermarks, then
/// a full scan of the Cassandra table, then the dead-letter topic.
pub async fn verify(config: &Config) -> Result<Report, VerifyError> {
    let (audited, unpublished) = audited_ids(config).await?;
    let (kafka_ids, kafka) = read_topic(config, &config.kafka.topic, true).await?;
    let cassandra = cassandra_ids(config).await?;
    let (dead_ids, dead_letters) = read_topic(config, &config.kafka.dead_letter_topic, false).await?;
    let diff = reconcile(&audited, &kafka_ids, &cassandra, &dead_ids);
    let missing_unpublished = diff.audited_not_in_kafka.iter().filter(|id| unpublished.contains(id)).count();
    Ok(Report {
        topic: config.kafka.topic.clone(),
        dead_letter_topic: config.kafka.dead_letter_topic.clone(),
        table: format!("{}.{}", config.cassandra.keyspace, config.cassandra.table),
        audited: audited.len() as u64,
        audited_unpublished: unpublished.len() as u64,
        missing_unpublished: missing_unpublished as u64,
        kafka,
        dead_letters,
        cassandra_rows: cassandra.len() as u64,
        diff,
    })
}

/// The ids audited for `kafka.topic`, and those of them not yet published.
async fn audited_ids(config: &Config) -> Result<(HashSet<Uuid>, HashSet<Uuid>), VerifyError> {
    let client = pipeline_core::postgres::connect(&config.postgres, "pipeline-verify").await?;
    let rows = client
        .query("SELECT user_id, published_at IS NOT NULL FROM audit.users WHERE topic = $1", &[&config.kafka.topic])
        .await
        .map_err(|source| VerifyError::PostgresQuery { source });
    drop(client);
    let rows = rows?;
    let mut audited = HashSet::with_capacity(rows.len());
    let mut unpublished = HashSet::new();
    for row in &rows {
        let id: Uuid = row.try_get(0).map_err(|source| VerifyError::PostgresQuery { source })?;
        let published: bool = row.try_get(1).map_err(|source| VerifyError::PostgresQuery { source })?;
        audited.insert(id);
        if !published {
            unpublished.insert(id);
        }
    }
    Ok((audited, unpublished))
}

/// Every id in the Cassandra table (full scan, paged by the driver).
async fn cassandra_ids(config: &Config) -> Result<HashSet<Uuid>, VerifyError> {
    let c = &config.cassandra;
    let query_err =
        |reason: String| VerifyError::CassandraQuery { keyspace: c.keyspace.clone(), table: c.table.clone(), reason };
    let session = pipeline_core::clients::cassandra::session(c)
        .await
        .map_err(|e| VerifyError::CassandraConnect { contact_points: e.nodes.join(","), reason: e.reason })?;
    // Keyspace and table are validated as plain identifiers by `Config::validate`.
    let mut rows = session
        .query_iter(format!("SELECT id FROM {}.{}", c.keyspace, c.table), ())
        .await
        .map_err(|e| query_err(e.to_string()))?
        .rows_stream::<(Uuid,)>()
        .map_err(|e| query_err(e.to_string()))?;
    let mut ids = HashSet::new();
    while let Some(row) = rows.next().await {
        let (id,) = row.map_err(|e| query_err(e.to_string()))?;
        ids.insert(id);
    }
    Ok(ids)
}

/// The distinct UUID keys of a topic and its counts, read on a blocking thread.
async fn read_topic(config: &Config, topic: &str, required: bool) -> Result<(HashSet<Uuid>, TopicCounts), VerifyError> {
    let bootstrap = config.kafka.bootstrap_servers.clone();
    let name = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&bootstrap, &name, required, KAFKA_READ_TIMEOUT))
        .await
        .map_err(|e| VerifyError::Join { topic: topic.to_string(), reason: e.to_string() })?
}

/// Reads `topic` from the low to the high watermarks taken at the start, partition by
/// partition, with manual assignment: no group membership, no commits. A missing topic is an
/// error when `required`, else empty.
fn read_topic_blocking(
    bootstrap: &str,
    topic: &str,
    required: bool,
    timeout: Duration,
) -> Result<(HashSet<Uuid>, TopicCounts), VerifyError> {
    let kafka_err = |what: &str, e: KafkaError| VerifyError::Kafka {
        bootstrap: bootstrap.to_string(),
        what: format!("{what} of `{topic}`"),
        reason: e.to_string(),
    };
    let consumer: BaseConsumer<QuietEof> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipeline-verify")
        // A group id of its own: `assign` never joins it and nothing is committed.
        .set("group.id", format!("pipeline-verify-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .create_with_context(QuietEof)
        .map_err(|e| kafka_err("creating a consumer", e))?;

    let metadata =
        consumer.fetch_metadata(Some(topic), KAFKA_REQUEST_TIMEOUT).map_err(|e| kafka_err("fetching metadata", e))?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) => match t.error() {
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Vec::new(),
            Some(code) => {
                return Err(VerifyError::Kafka {
                    bootstrap: bootstrap.to_string(),
                    what: format!("fetching metadata of `{topic}`"),
                    reason: format!("{code:?}"),
                })
            }
            None => t.partitions().iter().map(|p| p.id()).collect(),
        },
        None => Vec::new(),
    };
    if partitions.is_empty() {
        if required {
            return Err(VerifyError::TopicMissing { topic: topic.to_string(), bootstrap: bootstrap.to_string() });
        }
        return Ok((HashSet::new(), TopicCounts::default()));
    }

    let mut counts = TopicCounts { exists: true, ..TopicCounts::default() };
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0_u64;
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, KAFKA_REQUEST_TIMEOUT)
            .map_err(|e| kafka_err(&format!("fetching the watermarks of partition {p}"), e))?;
        counts.truncated |= low > 0;
        if high > low {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| kafka_err(&format!("assigning partition {p}"), e))?;
            ends.insert(p, high);
            expected += (high - low) as u64;
        }
    }
    let mut keys = HashSet::new();
    if ends.is_empty() {
        return Ok((keys, counts));
    }
    consumer.assign(&assignment).map_err(|e| kafka_err("assigning partitions", e))?;

    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(VerifyError::KafkaTimeout {
                bootstrap: bootstrap.to_string(),
                topic: topic.to_string(),
                read: counts.records,
                expected,
                timeout,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            // The end of a partition as it is now, at or past the high watermark taken above
            // (a transaction marker may sit at the last offset, so no record reaches it).
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => return Err(kafka_err("reading", e)),
            Some(Ok(m)) => {
                let Some(&end) = ends.get(&m.partition()) else { continue };
                if m.offset() >= end {
                    ends.remove(&m.partition());
                    continue;
                }
                counts.records += 1;
                if m.payload().is_none() {
                    counts.tombstones += 1;
                }
                match m.key() {
                    None => counts.null_keys += 1,
                    Some(key) => match std::str::from_utf8(key).ok().and_then(|k| Uuid::try_parse(k).ok()) {
                        Some(id) => {
                            keys.insert(id);
                        }
                        None => counts.non_uuid_keys += 1,
                    },
                }
                if m.offset() + 1 >= end {
                    ends.remove(&m.partition());
                }
            }
        }
    }
    counts.distinct_keys = keys.len() as u64;
    Ok((keys, counts))
}

/// Reaching the end of a partition is how the reader knows it is done, not an error worth
/// librdkafka's default "Global error" log line.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    fn set(v: &[Uuid]) -> HashSet<Uuid> {
        v.iter().copied().collect()
    }

    #[test]
    fn identical_stages_lose_nothing() {
        let all = set(&ids(5));
        let r = reconcile(&all, &all, &all, &HashSet::new());
        assert_eq!(r, Reconciliation::default());
        assert!(!r.lost());
    }

    #[test]
    fn every_difference_is_classified() {
        let u = ids(10);
        // 0..6 audited; 1 never reached Kafka; 8 sent to Kafka around the producer.
        let audited = set(&u[0..6]);
        let kafka = set(&[u[0], u[2], u[3], u[4], u[5], u[8]]);
        // 3 dead-lettered, 4 missing, 9 written to Cassandra by hand; 8 also reached Cassandra.
        let cassandra = set(&[u[0], u[2], u[5], u[8], u[9]]);
        let dead = set(&[u[3], u[7]]);
        let r = reconcile(&audited, &kafka, &cassandra, &dead);
        assert_eq!(r.audited_not_in_kafka, vec![u[1]]);
        assert_eq!(r.kafka_not_in_cassandra, vec![u[4]]);
        assert_eq!(r.dead_lettered, vec![u[3]], "a dead letter whose id is not on the topic is not reported");
        assert_eq!(r.cassandra_not_audited, vec![u[8], u[9]]);
        assert_eq!(r.kafka_not_audited, vec![u[8]]);
        assert!(r.lost());
    }

    #[test]
    fn dead_letters_are_not_losses() {
        let u = ids(3);
        let all = set(&u);
        let r = reconcile(&all, &all, &set(&u[..1]), &set(&u[1..]));
        assert!(r.kafka_not_in_cassandra.is_empty());
        assert_eq!(r.dead_lettered, u[1..].to_vec());
        assert!(!r.lost());
    }

    #[test]
    fn rows_without_audit_are_reported_but_not_lost() {
        let u = ids(4);
        let audited = set(&u[..2]);
        let r = reconcile(&audited, &set(&u[..3]), &set(&u), &HashSet::new());
        assert_eq!(r.kafka_not_audited, vec![u[2]]);
        assert_eq!(r.cassandra_not_audited, vec![u[2], u[3]]);
        assert!(!r.lost());
    }

    #[test]
    fn audited_but_unpublished_is_lost() {
        let u = ids(2);
        let r = reconcile(&set(&u), &set(&u[..1]), &set(&u[..1]), &HashSet::new());
        assert_eq!(r.audited_not_in_kafka, vec![u[1]]);
        assert!(r.lost());
    }

    #[test]
    fn differences_are_sorted() {
        let u = ids(50);
        let r = reconcile(&set(&u), &HashSet::new(), &HashSet::new(), &HashSet::new());
        assert_eq!(r.audited_not_in_kafka, u);
    }

    fn report(diff: Reconciliation) -> Report {
        Report {
            topic: "users_created".into(),
            dead_letter_topic: "users_created.dlq".into(),
            table: "spark_streams.created_users".into(),
            audited: 30,
            audited_unpublished: 0,
            missing_unpublished: 0,
            kafka: TopicCounts { exists: true, records: 31, distinct_keys: 31, ..TopicCounts::default() },
            dead_letters: TopicCounts { exists: true, ..TopicCounts::default() },
            cassandra_rows: 27,
            diff,
        }
    }

    #[test]
    fn display_shows_counts_samples_and_verdict() {
        let u = ids(12);
        let text =
            report(Reconciliation { kafka_not_in_cassandra: u.clone(), ..Reconciliation::default() }).to_string();
        assert!(text.contains("audited in PostgreSQL"), "{text}");
        assert!(text.contains("rows in Cassandra"), "{text}");
        for id in &u[..SAMPLE_SIZE] {
            assert!(text.contains(&id.to_string()), "{text}");
        }
        assert!(!text.contains(&u[SAMPLE_SIZE].to_string()), "at most {SAMPLE_SIZE} samples: {text}");
        assert!(text.contains("... and 2 more"), "{text}");
        assert!(text.ends_with("result: LOST"), "{text}");

        let ok = report(Reconciliation::default()).to_string();
        assert!(ok.ends_with("result: OK, nothing lost"), "{ok}");
        assert!(!ok.contains("LOST"), "{ok}");
    }
}
