//! `pipeline verify`: reconciles the audit store, the Kafka topic and Cassandra.
//!
//! Every user the producer accepts is audited in PostgreSQL (`audit.users_raw`), published to
//! `kafka.topic` with its id as key, and written by the job to
//! `cassandra.keyspace`.`cassandra.table` (or dead-lettered to `kafka.dead_letter_topic` with the
//! same key). [`verify`] collects the ids of each stage and [`reconcile`] compares them:
//!
//! - audited but not in Kafka: lost between the outbox and the broker (or still in the outbox);
//! - in Kafka but neither in Cassandra nor dead-lettered: lost by the job (or not processed yet);
//! - audited, in Kafka, dead-lettered and not in Cassandra: **refused by an engine**. The
//!   producer normalised, audited and published it, so it is valid by the pipeline's own
//!   contract: a failure, reported with the dead-letter reasons (fix the cause, then
//!   `pipeline dlq replay`);
//! - not audited and dead-lettered (foreign junk, malformed bytes, records sent around the
//!   producer): the dead-letter topic doing its job; reported with reasons, not a failure;
//! - audited, dead-lettered, and in Cassandra since (replayed): reported, not a failure;
//! - in Kafka but not audited, in Cassandra but not audited: written around the producer (tests,
//!   manual sends); reported, not a loss.
//!
//! [`Report`] prints as text (`Display`) and as the stable JSON document [`json::VerifyJson`]
//! (`pipeline verify --json`).
//!
//! The stages are read in pipeline order (audit, topic, table, dead letters), so on a live
//! pipeline each later snapshot already holds what the earlier one saw, give or take the job's
//! lag. Everything is read into memory and Cassandra is read with a full-table scan: this is a
//! development tool for tables of up to a few million rows, not a production auditor.

pub mod json;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::StreamExt;
use pipeline_core::Config;
use rdkafka::Message;
use uuid::Uuid;

use crate::dlq::DeadLetter;
use crate::scan::{scan, ScanError};

pub use json::{ReasonGroup, VerifyJson};

/// How many ids of each difference [`Report`]'s `Display` prints (and the JSON samples).
pub const SAMPLE_SIZE: usize = 10;

/// Why a verification could not run; each message names the service and what to try.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Postgres(#[from] pipeline_core::postgres::PgConnectError),
    #[error("PostgreSQL: reading audit.users failed: {source} (if the table does not exist, nothing was ever produced into this database: `pipeline produce` creates it)")]
    PostgresQuery { source: tokio_postgres::Error },
    #[error(transparent)]
    Kafka(#[from] ScanError),
    #[error(
        "cannot connect to Cassandra at {contact_points}: {reason} (is it running? `pipeline cluster up cassandra`)"
    )]
    CassandraConnect { contact_points: String, reason: String },
    #[error("Cassandra: scanning {keyspace}.{table} failed: {reason} (if the table does not exist, the job never ran with this configuration: `pipeline submit` creates it)")]
    CassandraQuery { keyspace: String, table: String, reason: String },
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
    /// Audited ids on the topic, not in Cassandra, whose key is on the dead-letter topic:
    /// valid users refused by an engine. A failure.
    pub refused_audited: Vec<Uuid>,
    /// Unaudited ids on the topic, not in Cassandra, whose key is on the dead-letter topic:
    /// input sent around the producer and refused. Not a failure.
    pub dead_lettered_unaudited: Vec<Uuid>,
    /// Audited ids on the dead-letter topic that are in Cassandra since (replayed, or written
    /// by another run). Not a failure.
    pub dead_lettered_since_written: Vec<Uuid>,
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

    /// Any audited id refused by an engine (dead-lettered, not in Cassandra).
    pub fn refused(&self) -> bool {
        !self.refused_audited.is_empty()
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
    let (refused, unaudited): (Vec<Uuid>, Vec<Uuid>) = dead.into_iter().partition(|id| audited.contains(id));
    Reconciliation {
        audited_not_in_kafka: sorted(audited.difference(kafka)),
        kafka_not_in_cassandra: sorted(missing.iter()),
        refused_audited: sorted(refused.iter()),
        dead_lettered_unaudited: sorted(unaudited.iter()),
        dead_lettered_since_written: sorted(
            dead_lettered.iter().filter(|id| audited.contains(id) && cassandra.contains(id)),
        ),
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
    /// [`Reconciliation::refused_audited`] grouped by the reason of each id's latest dead
    /// letter: count of ids, engines, sample ids.
    pub refused_reasons: Vec<ReasonGroup>,
    /// Dead letters whose key is not an audited id (not a UUID, null, or never audited).
    pub unaudited_dead_letters: u64,
    /// Those grouped by reason: count of records, engines, sample keys.
    pub unaudited_reasons: Vec<ReasonGroup>,
}

impl Report {
    /// Any audited id missing from Kafka, or any Kafka id missing from Cassandra and not
    /// dead-lettered. See [`Reconciliation::lost`].
    pub fn lost(&self) -> bool {
        self.diff.lost()
    }

    /// Any audited id refused by an engine. See [`Reconciliation::refused`].
    pub fn refused(&self) -> bool {
        self.diff.refused()
    }

    /// Nothing lost and nothing audited refused: `pipeline verify` exits 0.
    pub fn ok(&self) -> bool {
        !self.lost() && !self.refused()
    }
}

/// Groups `(reason, engine, sample)` items by reason: counts, the engines seen, and the first
/// [`SAMPLE_SIZE`] samples in the order given. Largest groups first.
pub fn group_reasons(items: impl IntoIterator<Item = (String, String, String)>) -> Vec<ReasonGroup> {
    let mut groups: BTreeMap<String, (u64, BTreeSet<String>, Vec<String>)> = BTreeMap::new();
    for (reason, engine, sample) in items {
        let g = groups.entry(reason).or_default();
        g.0 += 1;
        g.1.insert(engine);
        if g.2.len() < SAMPLE_SIZE {
            g.2.push(sample);
        }
    }
    let mut out: Vec<ReasonGroup> = groups
        .into_iter()
        .map(|(reason, (count, engines, samples))| ReasonGroup {
            reason,
            engines: engines.into_iter().collect(),
            count,
            samples,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    out
}

/// Reads the three stages and reconciles them. Read-only: no migrations, no consumer-group
/// commits, no writes.
///
/// Order: audit rows for `kafka.topic`, then the topic up to its current high watermarks, then
/// a full scan of the Cassandra table, then the dead-letter topic.
pub async fn verify(config: &Config) -> Result<Report, VerifyError> {
    let (audited, unpublished) = audited_ids(config).await?;
    let (kafka_ids, kafka) = read_topic(config).await?;
    let cassandra = cassandra_ids(config).await?;
    let (scanned, dead) = crate::dlq::read(config, false).await?;
    let dead_letters = dead_letter_counts(scanned.exists, scanned.truncated, &dead);
    // The latest dead letter of each id (records come in partition and offset order).
    let latest: HashMap<Uuid, &DeadLetter> = dead.iter().filter_map(|d| Some((d.id()?, d))).collect();
    let dead_ids: HashSet<Uuid> = latest.keys().copied().collect();
    let diff = reconcile(&audited, &kafka_ids, &cassandra, &dead_ids);
    let missing_unpublished = diff.audited_not_in_kafka.iter().filter(|id| unpublished.contains(id)).count();
    let refused_reasons = group_reasons(diff.refused_audited.iter().filter_map(|id| {
        let d = latest.get(id)?;
        Some((d.reason(), d.engine(), id.to_string()))
    }));
    let unaudited: Vec<&DeadLetter> = dead.iter().filter(|d| !d.id().is_some_and(|id| audited.contains(&id))).collect();
    let unaudited_reasons = group_reasons(
        unaudited.iter().map(|d| (d.reason(), d.engine(), d.key_str().unwrap_or_else(|| "(null key)".into()))),
    );
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
        refused_reasons,
        unaudited_dead_letters: unaudited.len() as u64,
        unaudited_reasons,
    })
}

/// The counts of the dead-letter topic.
fn dead_letter_counts(exists: bool, truncated: bool, dead: &[DeadLetter]) -> TopicCounts {
    let mut counts = TopicCounts { exists, truncated, records: dead.len() as u64, ..TopicCounts::default() };
    let mut keys = HashSet::new();
    for d in dead {
        counts.tombstones += u64::from(d.tombstone);
        match (&d.key, d.id()) {
            (None, _) => counts.null_keys += 1,
            (Some(_), None) => counts.non_uuid_keys += 1,
            (Some(_), Some(id)) => {
                keys.insert(id);
            }
        }
    }
    counts.distinct_keys = keys.len() as u64;
    counts
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

/// The distinct UUID keys of the events topic and its counts.
async fn read_topic(config: &Config) -> Result<(HashSet<Uuid>, TopicCounts), VerifyError> {
    let (scanned, (keys, mut counts)) = scan(
        &config.kafka.bootstrap_servers,
        &config.kafka.topic,
        true,
        (HashSet::new(), TopicCounts::default()),
        |(keys, counts): &mut (HashSet<Uuid>, TopicCounts), m| {
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
        },
    )
    .await?;
    counts.exists = scanned.exists;
    counts.truncated = scanned.truncated;
    counts.records = scanned.records;
    counts.distinct_keys = keys.len() as u64;
    Ok((keys, counts))
}

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
        let u = ids(12);
        // 0..6 audited; 1 never reached Kafka; 8 and 10 sent to Kafka around the producer.
        let audited = set(&u[0..6]);
        let kafka = set(&[u[0], u[2], u[3], u[4], u[5], u[8], u[10]]);
        // 3 refused, 4 missing, 9 written to Cassandra by hand; 8 also reached Cassandra;
        // 10 dead-lettered (unaudited); 5 dead-lettered once and in Cassandra since.
        let cassandra = set(&[u[0], u[2], u[5], u[8], u[9]]);
        let dead = set(&[u[3], u[5], u[7], u[10]]);
        let r = reconcile(&audited, &kafka, &cassandra, &dead);
        assert_eq!(r.audited_not_in_kafka, vec![u[1]]);
        assert_eq!(r.kafka_not_in_cassandra, vec![u[4]]);
        assert_eq!(r.refused_audited, vec![u[3]]);
        assert_eq!(
            r.dead_lettered_unaudited,
            vec![u[10]],
            "a dead letter whose id is not on the topic is not reported"
        );
        assert_eq!(r.dead_lettered_since_written, vec![u[5]]);
        assert_eq!(r.cassandra_not_audited, vec![u[8], u[9]]);
        assert_eq!(r.kafka_not_audited, vec![u[8], u[10]]);
        assert!(r.lost() && r.refused());
    }

    #[test]
    fn audited_dead_letters_are_refused_unaudited_ones_are_not() {
        let u = ids(4);
        let audited = set(&u[..3]);
        let kafka = set(&u);
        // 1 and 2 audited and refused; 3 unaudited and refused.
        let r = reconcile(&audited, &kafka, &set(&u[..1]), &set(&u[1..]));
        assert!(r.kafka_not_in_cassandra.is_empty());
        assert_eq!(r.refused_audited, u[1..3].to_vec());
        assert_eq!(r.dead_lettered_unaudited, vec![u[3]]);
        assert!(!r.lost() && r.refused());

        let junk_only = reconcile(&set(&u[..3]), &kafka, &set(&u[..3]), &set(&u[3..]));
        assert!(!junk_only.lost() && !junk_only.refused(), "{junk_only:?}");
        assert_eq!(junk_only.dead_lettered_unaudited, vec![u[3]]);
    }

    #[test]
    fn reasons_are_grouped_with_counts_engines_and_samples() {
        let items = (0..15).map(|i| {
            let reason = if i % 5 == 0 { "email is not an address" } else { "undecodable" };
            let engine = if i < 2 { "spark" } else { "datafusion" };
            (reason.to_string(), engine.to_string(), format!("id{i}"))
        });
        let g = group_reasons(items);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].reason.as_str(), g[0].count, g[0].samples.len()), ("undecodable", 12, SAMPLE_SIZE));
        assert_eq!(g[0].engines, vec!["datafusion".to_string(), "spark".to_string()]);
        assert_eq!((g[1].count, g[1].samples.clone()), (3, vec!["id0".to_string(), "id5".into(), "id10".into()]));
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
            refused_reasons: Vec::new(),
            unaudited_dead_letters: 0,
            unaudited_reasons: Vec::new(),
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

    #[test]
    fn refused_users_fail_with_their_reasons_in_text_and_json() {
        let u = ids(3);
        let mut r = report(Reconciliation { refused_audited: u.clone(), ..Reconciliation::default() });
        r.refused_reasons =
            group_reasons(u.iter().map(|id| ("undecodable Avro".into(), "spark".into(), id.to_string())));
        r.unaudited_dead_letters = 1;
        r.unaudited_reasons = group_reasons([("not registry-framed".into(), "datafusion".into(), "junk".into())]);
        assert!(!r.lost() && r.refused() && !r.ok());
        let text = r.to_string();
        assert!(text.contains("3 x undecodable Avro [spark]"), "{text}");
        assert!(text.contains("1 x not registry-framed [datafusion]"), "{text}");
        assert!(text.contains(&u[2].to_string()), "{text}");
        assert!(text.ends_with("result: FAILED, 3 audited user(s) refused by an engine"), "{text}");

        let json = serde_json::to_value(r.to_json()).expect("serialise");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["failures"], serde_json::json!(["refused"]));
        assert_eq!(json["refused_audited"]["count"], 3);
        assert_eq!(json["refused_audited"]["reasons"][0]["reason"], "undecodable Avro");
        assert_eq!(json["refused_audited"]["reasons"][0]["engines"], serde_json::json!(["spark"]));
        assert_eq!(json["dead_letters_unaudited"]["count"], 1);
        assert_eq!(json["counts"]["cassandra_rows"], 27);
        let back: VerifyJson = serde_json::from_value(json).expect("the document reads back");
        assert_eq!(back, r.to_json());

        let ok = report(Reconciliation::default()).to_json();
        assert_eq!((ok.status, ok.failures.len()), (json::Status::Ok, 0));
    }
}
