//! Helpers for the integration tests of every crate. Tests talk to the real services started
//! by `pipeline cluster up`; a service that is down makes the test fail, never skip.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_core::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

#[cfg(feature = "spark")]
mod spark;
#[cfg(feature = "spark")]
pub use spark::{connector_sees_table, spark_session};

/// The effective configuration (defaults + env), relative paths resolved at the workspace root.
pub fn config() -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    Config::load(None).expect("valid configuration").rebase(root)
}

/// A name no other test (or earlier run) uses: topics, keyspaces, tables, subjects.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A Cassandra session on the configured contact points.
pub async fn cassandra(config: &Config) -> scylla::client::session::Session {
    pipeline_core::clients::cassandra::session(&config.cassandra)
        .await
        .expect("Cassandra must be up (pipeline cluster up)")
}

/// A connection to the audit database as the pipeline role.
pub async fn audit_db(config: &Config) -> tokio_postgres::Client {
    pipeline_core::postgres::connect(&config.postgres, "pipeline-tests")
        .await
        .expect("PostgreSQL must be up (pipeline cluster up)")
}

/// Creates a topic (already existing is fine).
pub async fn create_topic(config: &Config, topic: &str, partitions: i32) {
    pipeline_core::clients::kafka::create_topics(&config.kafka, &[topic], partitions)
        .await
        .expect("Kafka must be up (pipeline cluster up)");
}

/// One consumed Kafka record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Every record of a topic from the beginning up to the high watermarks taken now.
pub async fn read_topic(config: &Config, topic: &str) -> Vec<Record> {
    let kafka = config.kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_topic_blocking(&kafka, &topic)).await.expect("join")
}

fn read_topic_blocking(kafka: &pipeline_core::config::KafkaConfig, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = pipeline_core::clients::kafka::client_config(kafka, "testkit")
        .set("group.id", unique("testkit"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0_i64;
    let mut ends = std::collections::HashMap::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks");
        assignment.add_partition_offset(topic, *p, Offset::Offset(low)).expect("assign");
        remaining += high - low;
        ends.insert(*p, high);
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::with_capacity(remaining as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining {
        assert!(Instant::now() < deadline, "read {} of {remaining} records of {topic} within 60 s", out.len());
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if m.offset() < ends[&m.partition()] => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
            }),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
        }
    }
    out
}

/// A configuration of a test's own: topic, dead-letter topic, subject, keyspace, consumer
/// group, Spark query names, checkpoints and Spark Connect session, all unique.
pub fn isolated(prefix: &str) -> Config {
    let mut c = config();
    c.kafka.topic = unique(prefix);
    c.kafka.dead_letter_topic = format!("{}.dlq", c.kafka.topic);
    c.registry.subject = format!("{}-value", c.kafka.topic);
    c.cassandra.keyspace = unique("it_ks");
    c.local.group_id = format!("{}_group", c.kafka.topic);
    c.job.query_name = format!("{}_main", c.kafka.topic);
    c.job.dead_letter_query_name = format!("{}_dlq", c.kafka.topic);
    c.job.checkpoint_dir = std::env::temp_dir().join(unique("it_checkpoints"));
    c.job.session_id = uuid::Uuid::new_v4();
    c
}

/// The `PIPELINE__*` variables that make a `pipeline` child process use `config`'s isolated
/// names (what [`isolated`] changes).
pub fn pipeline_env(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("PIPELINE__KAFKA__TOPIC", config.kafka.topic.clone()),
        ("PIPELINE__KAFKA__DEAD_LETTER_TOPIC", config.kafka.dead_letter_topic.clone()),
        ("PIPELINE__REGISTRY__SUBJECT", config.registry.subject.clone()),
        ("PIPELINE__CASSANDRA__KEYSPACE", config.cassandra.keyspace.clone()),
        ("PIPELINE__CASSANDRA__TABLE", config.cassandra.table.clone()),
        ("PIPELINE__LOCAL__GROUP_ID", config.local.group_id.clone()),
        ("PIPELINE__JOB__QUERY_NAME", config.job.query_name.clone()),
        ("PIPELINE__JOB__DEAD_LETTER_QUERY_NAME", config.job.dead_letter_query_name.clone()),
        ("PIPELINE__JOB__CHECKPOINT_DIR", config.job.checkpoint_dir.to_string_lossy().into_owned()),
        ("PIPELINE__JOB__SESSION_ID", config.job.session_id.to_string()),
        ("PIPELINE__JOB__TRIGGER_INTERVAL", config.job.trigger_interval.to_string()),
        // Several engines may run at once in tests: let each pick a free metrics port.
        ("PIPELINE__LOCAL__METRICS_ADDR", "127.0.0.1:0".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

/// The turns of a two-contender benchmark, BENCH_ROUNDS (or `default_rounds`) rounds long, in
/// alternating order (A B, B A, A B...): on 2 shared cores a run depends on what ran just before
/// it (JIT warm-up, compactions, page cache), so neither contender always goes first.
/// `(round, true)` is A's turn.
pub fn alternating_turns(default_rounds: usize) -> Vec<(usize, bool)> {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_rounds);
    (0..rounds)
        .flat_map(
            |round| if round % 2 == 0 { [(round, true), (round, false)] } else { [(round, false), (round, true)] },
        )
        .collect()
}

/// The mean of benchmark results (0 for none).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Benchmark results as a comma-separated list of whole numbers.
pub fn listed(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
}
