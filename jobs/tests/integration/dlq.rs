//! Dead letters of audited users on the real services: `verify` fails on them (and not on
//! foreign junk), `dlq list` groups them, `dlq replay` brings them to Cassandra through the
//! local engine, once.
//!
//! How the audited users get refused. The local engine refuses only what is invalid by the
//! pipeline's contract, and the producer's users are valid, so no cheap, fixable cause makes it
//! refuse them. The Spark job does refuse valid users when it runs with a later schema id than
//! the one they were framed with (issue #18): its frame check dead-letters each with
//! `schema id N is not the schema id M the job was submitted with`. Submitting Spark is costly
//! on the shared cluster, so the test stands in for it: after the five users are consumed (the
//! engine group's offsets are moved past them, as an engine that consumed them would leave
//! them), their exact bytes and key go to the dead-letter topic with the headers the Spark job
//! writes. The foreign junk, by contrast, is really refused by the local engine.

use std::collections::HashSet;
use std::time::Duration;

use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_jobs::dlq::{self, ReplayOptions, REPLAY_HEADER};
use pipeline_jobs::local::{run, LocalOptions, LocalSummary};
use pipeline_jobs::verify::{json::Status, verify, Report};
use pipeline_testkit::read_topic;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::oracle::{create_topics, isolated, produce};

async fn run_until_idle(cfg: &Config) -> LocalSummary {
    let opts = LocalOptions { until_idle: true, max_records: None };
    tokio::time::timeout(Duration::from_secs(240), run(cfg, opts, CancellationToken::new()))
        .await
        .expect("idle within 240 s")
        .expect("local run")
}

async fn report(cfg: &Config) -> Report {
    let r = verify(cfg).await.expect("verify");
    println!("{r}\n");
    r
}

/// A record to send: key, value, headers.
type Outgoing<'a> = (Option<&'a str>, &'a [u8], &'a [(&'a str, &'a str)]);

/// The headers the Spark job writes on a dead letter.
type SparkHeaders<'a> = [(&'a str, &'a str); 3];

/// Sends records with headers straight to `topic` (around the producer and its audit).
async fn send(cfg: &Config, topic: &str, records: &[Outgoing<'_>]) {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &cfg.kafka.bootstrap_servers).create().expect("producer");
    for (key, value, headers) in records {
        let mut hs = OwnedHeaders::new();
        for (k, v) in *headers {
            hs = hs.insert(Header { key: k, value: Some(*v) });
        }
        let mut record: FutureRecord<str, [u8]> = FutureRecord::to(topic).payload(*value).headers(hs);
        if let Some(k) = key {
            record = record.key(k);
        }
        producer.send(record, Duration::from_secs(10)).await.expect("delivery");
    }
}

/// Moves the local engine's group to the end of the topic, as an engine that consumed every
/// record so far leaves it (the group has no member at this point).
fn commit_group_to_end(cfg: &Config) {
    let topic = &cfg.kafka.topic;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
        .set("group.id", &cfg.local.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
        tpl.add_partition_offset(topic, p.id(), Offset::Offset(high)).expect("offset");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

#[tokio::test]
async fn audited_dead_letters_fail_verify_until_replayed_once() {
    let cfg = isolated("it_dlq");
    create_topics(&cfg).await;

    // Foreign junk on the events topic, refused for real by the local engine.
    let stranger = Uuid::new_v4().to_string();
    send(
        &cfg,
        &cfg.kafka.topic,
        &[(Some(stranger.as_str()), b"not audited", &[]), (Some("not-a-uuid"), &[0, 0], &[]), (None, b"no key", &[])],
    )
    .await;
    produce(&cfg, 15, rand::random::<u64>() | 1).await;
    let first = run_until_idle(&cfg).await;
    assert_eq!((first.written, first.dead_lettered), (15, 3), "{first:?}");

    // Junk alone is reported, not a failure.
    let r = report(&cfg).await;
    assert!(r.ok(), "foreign junk alone must not fail verify: {r}");
    assert_eq!(r.unaudited_dead_letters, 3, "{r}");
    assert!(r.diff.refused_audited.is_empty() && r.refused_reasons.is_empty(), "{r}");
    assert_eq!(r.unaudited_reasons.iter().map(|g| g.count).sum::<u64>(), 3, "{r}");
    assert!(r.unaudited_reasons.iter().all(|g| g.engines == ["datafusion"]), "{r}");

    // Five more users, audited and published, then consumed and refused by "Spark".
    let before: HashSet<Option<String>> =
        read_topic(&cfg, &cfg.kafka.topic).await.iter().map(|r| r.key_str().map(str::to_string)).collect();
    produce(&cfg, 5, rand::random::<u64>() | 1).await;
    let new: Vec<pipeline_testkit::Record> = read_topic(&cfg, &cfg.kafka.topic)
        .await
        .into_iter()
        .filter(|r| !before.contains(&r.key_str().map(str::to_string)))
        .collect();
    assert_eq!(new.len(), 5);
    let mut refused: Vec<Uuid> = new.iter().map(|r| r.key_str().and_then(|k| k.parse().ok()).expect("id")).collect();
    refused.sort_unstable();
    tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || commit_group_to_end(&cfg)
    })
    .await
    .expect("join");
    let value = |r: &pipeline_testkit::Record| r.value.clone().expect("value");
    let schema_id = u32::from_be_bytes(value(&new[0])[1..5].try_into().expect("framed"));
    let reason = format!("schema id {schema_id} is not the schema id {} the job was submitted with", schema_id + 1);
    let positions: Vec<String> = new.iter().map(|r| format!("{}:{}", r.partition, r.offset)).collect();
    let values: Vec<Vec<u8>> = new.iter().map(value).collect();
    let headers: Vec<SparkHeaders<'_>> = positions
        .iter()
        .map(|pos| [("reason", reason.as_str()), ("engine", "spark"), ("source_offset", pos.as_str())])
        .collect();
    let dead: Vec<Outgoing<'_>> =
        new.iter().zip(&values).zip(&headers).map(|((r, v), h)| (r.key_str(), v.as_slice(), &h[..])).collect();
    send(&cfg, &cfg.kafka.dead_letter_topic, &dead).await;

    // verify fails and names the reason; the junk is still only reported.
    let r = report(&cfg).await;
    assert!(!r.ok() && r.refused() && !r.lost(), "{r}");
    assert_eq!(r.diff.refused_audited, refused, "{r}");
    assert_eq!(r.refused_reasons.len(), 1, "{r}");
    let g = &r.refused_reasons[0];
    assert_eq!((g.reason.as_str(), g.count, g.engines.clone()), (reason.as_str(), 5, vec!["spark".to_string()]));
    assert_eq!(g.samples.len(), 5);
    assert_eq!(r.unaudited_dead_letters, 3, "{r}");
    let text = r.to_string();
    assert!(
        text.contains(&reason) && text.ends_with("result: FAILED, 5 audited user(s) refused by an engine"),
        "{text}"
    );
    let json = r.to_json();
    assert_eq!((json.status, json.refused_audited.count, json.dead_letters_unaudited.count), (Status::Failed, 5, 3));

    // dlq list: grouped by reason and engine, audited ones counted.
    let listing = dlq::list(&cfg).await.expect("list");
    print!("{listing}");
    assert_eq!((listing.records, listing.replayed), (8, 0));
    let spark = listing.groups.iter().find(|g| g.reason == reason).expect("the refusal's group");
    assert_eq!((spark.engine.as_str(), spark.count, spark.audited, spark.replayed), ("spark", 5, 5, 0));
    assert_eq!(spark.samples.len(), dlq::LIST_SAMPLES);
    assert_eq!(listing.groups.iter().map(|g| g.audited).sum::<u64>(), 5, "junk is not audited");

    // "The cause is fixed"; replay: the audited dead letters only, to the events topic.
    let replayed = dlq::replay(&cfg, &ReplayOptions::default()).await.expect("replay");
    println!("{replayed}");
    assert_eq!(
        (replayed.dead_letters, replayed.matched, replayed.republished, replayed.already_replayed),
        (8, 8, 5, 0),
        "{replayed:?}"
    );
    assert_eq!(replayed.skipped_unaudited, 3);
    let republished: Vec<_> =
        read_topic(&cfg, &cfg.kafka.topic).await.into_iter().filter(|r| r.header(REPLAY_HEADER).is_some()).collect();
    assert_eq!(republished.len(), 5);
    for r in &republished {
        let original = new.iter().find(|n| n.key == r.key).expect("same key");
        assert_eq!(r.value, original.value, "the original bytes");
        assert!(r.header("reason").is_none() && r.header("engine").is_none() && r.header("source_offset").is_none());
        assert!(r.header(REPLAY_HEADER).is_some_and(|h| h.starts_with(&format!("{}:", cfg.kafka.dead_letter_topic))));
    }
    let db = pipeline_testkit::audit_db(&cfg).await;
    let ledger: i64 = db
        .query_one(
            "SELECT count(*) FROM audit.dlq_replays WHERE dlq_topic = $1 AND target_topic = $2",
            &[&cfg.kafka.dead_letter_topic, &cfg.kafka.topic],
        )
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(ledger, 5);

    // The engine writes the replayed users; verify is OK.
    let second = run_until_idle(&cfg).await;
    assert_eq!((second.consumed, second.written, second.dead_lettered), (5, 5, 0), "{second:?}");
    let r = report(&cfg).await;
    assert!(r.ok(), "{r}");
    assert_eq!(r.diff.dead_lettered_since_written, refused, "{r}");
    assert_eq!((r.cassandra_rows, r.unaudited_dead_letters), (20, 3), "{r}");
    assert_eq!(r.to_json().status, Status::Ok);

    // A second replay republishes nothing.
    let again = dlq::replay(&cfg, &ReplayOptions::default()).await.expect("second replay");
    assert_eq!((again.republished, again.already_replayed, again.skipped_unaudited), (0, 5, 3), "{again:?}");
    let with_junk = ReplayOptions { reason: Some(reason.clone()), include_unaudited: true, ..ReplayOptions::default() };
    let by_reason = dlq::replay(&cfg, &with_junk).await.expect("replay by reason");
    assert_eq!((by_reason.matched, by_reason.republished), (5, 0), "{by_reason:?}");
    assert_eq!(
        read_topic(&cfg, &cfg.kafka.topic).await.iter().filter(|r| r.header(REPLAY_HEADER).is_some()).count(),
        5
    );
    assert_eq!(dlq::list(&cfg).await.expect("list").replayed, 5);

    let cassandra = pipeline_testkit::cassandra(&cfg).await;
    cassandra
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", cfg.cassandra.keyspace), ())
        .await
        .expect("drop keyspace");
}
