//! Synthetic users through the whole producer: audit rows, Kafka messages, decodable events.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use pipeline_core::config::SourceKind;
use pipeline_core::model::UserEvent;
use pipeline_core::shutdown::CancellationToken;
use pipeline_producer::audit::{AuditRecord, AuditStore};
use pipeline_producer::normalize::{normalize, CREDENTIAL_FIELDS};
use pipeline_producer::source::synthetic::SyntheticSource;
use pipeline_producer::source::Source;
use pipeline_producer::{run, ProduceOptions};
use pipeline_testkit::{create_topic, read_topic};
use uuid::Uuid;

use crate::{audit_db, decode, isolated_config};

/// The users the synthetic source yields for a seed, as raw JSON.
async fn generated(seed: u64, count: usize) -> Vec<serde_json::Value> {
    let mut source: Source = SyntheticSource::new(seed).into();
    let fetched = source.fetch(count).await.expect("synthetic fetch");
    assert!(fetched.rejected.is_empty());
    fetched.users
}

/// Equal apart from the two times set when the producer ran.
fn same_user(a: &UserEvent, b: &UserEvent) -> bool {
    UserEvent { produced_at: b.produced_at, fetched_at: b.fetched_at, ..a.clone() } == *b
}

#[tokio::test]
async fn synthetic_users_are_audited_and_published_with_the_registered_schema() {
    let cfg = isolated_config();
    create_topic(&cfg, &cfg.kafka.topic, 3).await;
    let seed = rand::random::<u64>() | 1;
    let count = 300;
    let opts = ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(count),
        rate: None,
        batch: 70,
        interval: None,
        seed,
    };
    let summary = run(&cfg, opts, CancellationToken::new(), None).await.expect("producer run");
    assert_eq!((summary.fetched, summary.audited, summary.published, summary.rejected), (count, count, count, 0));
    assert!(summary.ok());

    let users = generated(seed, count as usize).await;
    let now = Utc::now();
    let expected: HashMap<Uuid, UserEvent> = users
        .iter()
        .map(|u| normalize(u.clone(), "synthetic", now, now).expect("synthetic users normalise").event)
        .map(|e| (e.id, e))
        .collect();
    assert_eq!(expected.len(), count as usize, "synthetic ids are unique");

    // Kafka: one message per user, keyed by id, decodable with the schema its header names.
    let records = read_topic(&cfg, &cfg.kafka.topic).await;
    assert_eq!(records.len(), count as usize);
    let mut seen = HashSet::new();
    for r in &records {
        let key: Uuid = r.key_str().expect("utf-8 key").parse().expect("key is the user id");
        assert!(seen.insert(key), "duplicate key {key}");
        assert_eq!(r.header("source"), Some("synthetic"));
        assert!(r.header("produced_at").is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));
        let event = decode(&cfg, r.value.as_deref().expect("value")).await;
        assert_eq!(event.id, key);
        assert!(same_user(&event, &expected[&key]), "field values differ for {key}:\n{event:?}\n{:?}", expected[&key]);
        assert!(event.fetched_at <= event.produced_at);
    }

    // PostgreSQL: every user audited and marked published with its partition and offset.
    let db = audit_db(&cfg).await;
    let ids: Vec<Uuid> = expected.keys().copied().collect();
    let row = db
        .query_one(
            "SELECT count(*), count(published_at), count(kafka_offset) FROM audit.users WHERE user_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("audit query");
    let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(counts, (count as i64, count as i64, count as i64));
    let by_offset = db
        .query("SELECT user_id, kafka_partition, kafka_offset FROM audit.users WHERE user_id = ANY($1)", &[&ids])
        .await
        .expect("offsets");
    let in_kafka: HashMap<Uuid, (i32, i64)> = records
        .iter()
        .map(|r| (r.key_str().unwrap_or_default().parse().unwrap_or_default(), (r.partition, r.offset)))
        .collect();
    for row in by_offset {
        let id: Uuid = row.get(0);
        assert_eq!(in_kafka.get(&id), Some(&(row.get::<_, i32>(1), row.get::<_, i64>(2))), "audit offset of {id}");
    }
}

#[tokio::test]
async fn credentials_reach_neither_postgres_nor_kafka() {
    let cfg = isolated_config();
    create_topic(&cfg, &cfg.kafka.topic, 1).await;
    let seed = rand::random::<u64>() | 1;
    let count = 50;
    let users = generated(seed, count).await;
    // The source does carry credentials (as the real API does) ...
    for u in &users {
        for field in CREDENTIAL_FIELDS {
            assert!(u["login"][field].is_string(), "synthetic users carry login.{field}");
        }
    }
    // Hash values cannot occur by chance elsewhere (a password word could be a street name).
    let secrets: Vec<String> = users
        .iter()
        .flat_map(|u| {
            ["md5", "sha1", "sha256"].into_iter().filter_map(move |f| u["login"][f].as_str().map(String::from))
        })
        .collect();

    let opts = ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(count as u64),
        rate: None,
        batch: 25,
        interval: None,
        seed,
    };
    run(&cfg, opts, CancellationToken::new(), None).await.expect("producer run");

    // ... and none of them is stored or published.
    let ids: Vec<Uuid> =
        users.iter().map(|u| u["login"]["uuid"].as_str().unwrap_or_default().parse().unwrap_or_default()).collect();
    let db = audit_db(&cfg).await;
    let payloads: Vec<String> = db
        .query("SELECT payload::text FROM audit.users_raw WHERE user_id = ANY($1)", &[&ids])
        .await
        .expect("payloads")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(payloads.len(), count);
    let records = read_topic(&cfg, &cfg.kafka.topic).await;
    assert_eq!(records.len(), count);
    for text in payloads
        .iter()
        .map(String::as_str)
        .chain(records.iter().map(|r| std::str::from_utf8(r.value.as_deref().unwrap_or_default()).unwrap_or("")))
    {
        for field in CREDENTIAL_FIELDS {
            assert!(!text.contains(&format!("\"{field}\"")), "credential field {field} stored: {text}");
        }
    }
    for r in &records {
        let raw = r.value.as_deref().unwrap_or_default();
        for secret in &secrets {
            assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()), "a credential value reached Kafka");
        }
    }
    for p in &payloads {
        for secret in &secrets {
            assert!(!p.contains(secret.as_str()), "a credential value reached PostgreSQL");
        }
    }
}

/// Audit records for `count` synthetic users of a random seed, framed with `schema_id`.
async fn audit_records(count: usize, schema_id: u32) -> Vec<AuditRecord> {
    let schema = apache_avro::Schema::parse(&pipeline_core::model::event_avro_schema()).expect("schema");
    let now = Utc::now();
    generated(rand::random::<u64>() | 1, count)
        .await
        .into_iter()
        .map(|u| {
            let n = normalize(u, "synthetic", now, now).expect("normalise");
            let datum = apache_avro::to_avro_datum(&schema, n.event.to_avro()).expect("encode");
            AuditRecord {
                user_id: n.event.id,
                source: "synthetic",
                payload: n.payload.to_string(),
                kafka_value: pipeline_core::registry::frame(schema_id, &datum),
                schema_id,
                fetched_at: now,
            }
        })
        .collect()
}

#[tokio::test]
async fn ids_already_audited_or_repeated_are_skipped() {
    let cfg = isolated_config();
    let store = AuditStore::connect(&cfg.postgres).await.expect("audit store");
    let records = audit_records(30, 1).await;
    let topic = &cfg.kafka.topic;

    // A batch with one id twice keeps the first copy.
    let mut first = records[..10].to_vec();
    first.push(records[3].clone());
    let rows = store.insert(topic, first).await.expect("audit");
    let keys: Vec<String> = rows.iter().map(|r| r.key.clone()).collect();
    let expected: Vec<String> = records[..10].iter().map(|r| r.user_id.to_string()).collect();
    assert_eq!(keys, expected, "rows in batch order, the repeat skipped");
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(rows[4].value, records[4].kafka_value);

    // 5 known ids among 10: only the 5 new ones.
    let rows = store.insert(topic, records[5..15].to_vec()).await.expect("audit");
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| records[10..15].iter().any(|x| x.user_id.to_string() == r.key)));

    let rows = store.insert(topic, records[10..30].to_vec()).await.expect("audit");
    assert_eq!(rows.len(), 15);

    // Every audited row is queued in the outbox exactly once.
    let ids: Vec<Uuid> = records.iter().map(|r| r.user_id).collect();
    let row = audit_db(&cfg)
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT o.seq) FROM audit.users_raw r JOIN audit.outbox o USING (seq) \
             WHERE r.user_id = ANY($1)",
            &[&ids],
        )
        .await
        .expect("count");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (30, 30));
}

#[tokio::test]
async fn audited_but_unpublished_rows_are_published_first_on_start() {
    let cfg = isolated_config();
    create_topic(&cfg, &cfg.kafka.topic, 1).await;
    let schema_id = pipeline_producer::register_event_schema(&cfg).await.expect("schema");

    // A crash between audit and publish leaves rows like these behind.
    let seed = rand::random::<u64>() | 1;
    let records = audit_records(40, schema_id).await;
    let store = AuditStore::connect(&cfg.postgres).await.expect("audit store");
    let backlog = store.insert(&cfg.kafka.topic, records.clone()).await.expect("audit");
    assert_eq!(backlog.len(), 40);

    // The next run publishes them before fetching anything new.
    let opts = ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(10),
        rate: None,
        batch: 16,
        interval: None,
        seed: seed ^ 0x5eed,
    };
    let summary = run(&cfg, opts, CancellationToken::new(), None).await.expect("producer run");
    assert_eq!(summary.recovered, 40, "{summary:?}");
    assert_eq!(summary.published, 10);

    let keys: HashSet<Uuid> =
        read_topic(&cfg, &cfg.kafka.topic).await.iter().filter_map(|r| r.key_str()?.parse().ok()).collect();
    for r in &records {
        assert!(keys.contains(&r.user_id), "backlog user {} not published", r.user_id);
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.user_id).collect();
    let unpublished: i64 = audit_db(&cfg)
        .await
        .query_one("SELECT count(*) FROM audit.users WHERE user_id = ANY($1) AND published_at IS NULL", &[&ids])
        .await
        .expect("count")
        .get(0);
    assert_eq!(unpublished, 0);
}
