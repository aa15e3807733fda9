//! `pipeline verify` on the real services: users produced through the producer, rows written
//! to the test's own Cassandra table directly (no job), then rows deleted and records sent
//! around the producer.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use pipeline_core::model::{cql_create_keyspace, cql_create_table, CreatedUserRow};
use pipeline_core::Config;
use pipeline_jobs::verify::{verify, Report};
use pipeline_testkit::read_topic;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use uuid::Uuid;

use crate::oracle::{create_topics, isolated, produce};

/// Creates the test's keyspace and table from the record model.
async fn create_table(db: &Session, config: &Config) {
    let c = &config.cassandra;
    for cql in [
        cql_create_keyspace(&c.keyspace, c.replication_factor),
        cql_create_table(&c.keyspace, &c.table, CreatedUserRow::FIELDS),
    ] {
        db.query_unpaged(cql, ()).await.expect("create keyspace/table");
    }
    db.await_schema_agreement().await.expect("schema agreement");
}

/// Writes a minimal row (the id and the non-null columns) for each id.
async fn insert_rows(db: &Session, config: &Config, ids: &[Uuid]) {
    let insert = db
        .prepare(format!(
            "INSERT INTO {}.{} (id, first_name, last_name, email, username, \"timestamp\", produced_at, processed_at, engine) \
             VALUES (?, 'Ada', 'Lovelace', 'ada@example.org', 'ada', ?, ?, ?, 'test')",
            config.cassandra.keyspace, config.cassandra.table
        ))
        .await
        .expect("prepare insert");
    let now = Utc::now();
    for id in ids {
        db.execute_unpaged(&insert, (id, now, now, now)).await.expect("insert row");
    }
}

/// Sends `(key, value)` records to `topic` directly, bypassing the producer and its audit.
async fn send(config: &Config, topic: &str, records: &[(Option<String>, Option<&[u8]>)]) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record: FutureRecord<str, [u8]> = FutureRecord::to(topic);
        if let Some(k) = key {
            record = record.key(k.as_str());
        }
        if let Some(v) = value {
            record = record.payload(*v);
        }
        producer.send(record, Duration::from_secs(10)).await.expect("delivery");
    }
}

async fn report(config: &Config) -> Report {
    let report = verify(config).await.expect("verify");
    println!("{report}\n");
    report
}

#[tokio::test]
async fn verify_reconciles_audit_kafka_and_cassandra() {
    let cfg = isolated("it_verify");
    create_topics(&cfg).await;
    produce(&cfg, 30, rand::random::<u64>() | 1).await;
    let mut produced: Vec<Uuid> = read_topic(&cfg, &cfg.kafka.topic)
        .await
        .iter()
        .map(|r| r.key_str().and_then(|k| Uuid::parse_str(k).ok()).expect("UUID key"))
        .collect();
    produced.sort_unstable();
    assert_eq!(produced.len(), 30);
    assert_eq!(produced.iter().collect::<HashSet<_>>().len(), 30, "keys are distinct");

    let db = pipeline_testkit::cassandra(&cfg).await;
    create_table(&db, &cfg).await;
    insert_rows(&db, &cfg, &produced).await;

    // Every stage holds the same 30 ids.
    let r = report(&cfg).await;
    assert!(!r.lost(), "{r}");
    assert_eq!((r.audited, r.audited_unpublished, r.cassandra_rows), (30, 0, 30), "{r}");
    assert_eq!((r.kafka.records, r.kafka.distinct_keys, r.kafka.non_uuid_keys, r.kafka.null_keys), (30, 30, 0, 0));
    assert!(r.kafka.exists && r.dead_letters.exists && !r.kafka.truncated, "{r}");
    assert_eq!(r.diff, Default::default(), "{r}");

    // Around the producer: a user sent straight to Kafka (and dead-lettered, as the job would),
    // a non-UUID key without value, a record without key, a row written straight to Cassandra.
    let kafka_only = Uuid::new_v4();
    let cassandra_only = Uuid::new_v4();
    send(
        &cfg,
        &cfg.kafka.topic,
        &[
            (Some(kafka_only.to_string()), Some(b"not audited")),
            (Some("not-a-uuid".into()), None),
            (None, Some(b"no key")),
        ],
    )
    .await;
    send(&cfg, &cfg.kafka.dead_letter_topic, &[(Some(kafka_only.to_string()), Some(b"not audited"))]).await;
    insert_rows(&db, &cfg, &[cassandra_only]).await;
    let r = report(&cfg).await;
    assert!(r.ok(), "a dead-lettered unaudited id and unaudited rows are not failures: {r}");
    assert_eq!(r.diff.kafka_not_audited, vec![kafka_only], "{r}");
    assert_eq!(r.diff.dead_lettered_unaudited, vec![kafka_only], "{r}");
    assert_eq!(r.unaudited_dead_letters, 1, "{r}");
    assert_eq!(r.diff.cassandra_not_audited, vec![cassandra_only], "{r}");
    assert!(r.diff.kafka_not_in_cassandra.is_empty() && r.diff.audited_not_in_kafka.is_empty(), "{r}");
    assert_eq!(
        (r.kafka.records, r.kafka.distinct_keys, r.kafka.non_uuid_keys, r.kafka.null_keys, r.kafka.tombstones),
        (33, 31, 1, 1, 1),
        "{r}"
    );
    assert_eq!((r.dead_letters.records, r.dead_letters.distinct_keys, r.cassandra_rows), (1, 1, 31), "{r}");

    // Three rows lost by the "job".
    let deleted = vec![produced[3], produced[11], produced[27]];
    for id in &deleted {
        db.query_unpaged(format!("DELETE FROM {}.{} WHERE id = ?", cfg.cassandra.keyspace, cfg.cassandra.table), (id,))
            .await
            .expect("delete row");
    }
    let r = report(&cfg).await;
    assert!(r.lost(), "{r}");
    assert_eq!(r.diff.kafka_not_in_cassandra, deleted, "{r}");
    assert!(r.diff.audited_not_in_kafka.is_empty(), "{r}");
    assert_eq!(r.diff.kafka_not_audited, vec![kafka_only], "{r}");
    assert_eq!(r.cassandra_rows, 28, "{r}");
    let text = r.to_string();
    for id in &deleted {
        assert!(text.contains(&id.to_string()), "{text}");
    }

    db.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", cfg.cassandra.keyspace), ()).await.expect("drop keyspace");
}

#[tokio::test]
async fn verify_names_a_missing_topic() {
    let cfg = isolated("it_verify_missing");
    let err = verify(&cfg).await.expect_err("the topic does not exist");
    let text = err.to_string();
    assert!(text.contains(&cfg.kafka.topic) && text.contains("does not exist"), "{text}");
}
