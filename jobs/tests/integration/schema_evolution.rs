//! Status from a second process, and a schema version registered while the Spark job runs.
//!
//! An independent producer (apache-avro and rdkafka here, not the producer crate) registers v1,
//! streams v1 messages while `pipeline jobs status --json` runs as a separate process: batch ids
//! advance and the offsets reach the topic's end. It then registers a v2 with a new optional
//! field and sends 300 more v1 and 500 v2 interleaved: the job fails its batch on purpose (it
//! does not know v2), which the status shows with its reason and exit code 3; a resubmit picks
//! v2 up from the checkpoint. 1000 rows, zero dead letters. The local engine (`pipeline local`)
//! reads the same topic into its own table: 1000 rows too.

use std::process::Command;
use std::time::{Duration, Instant};

use apache_avro::types::Value as Avro;
use pipeline_core::model::UserEvent;
use pipeline_jobs::spark::{self, JobState, JobStatus, QueryState};
use pipeline_testkit::{eventually, pipeline_env, read_topic};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use uuid::Uuid;

use crate::oracle::{create_topics, edge_case_events, isolated, pipeline_binary, row_count, wait_for_rows};

const WAIT: Duration = Duration::from_secs(240);

/// Registers a schema with a plain HTTP call; returns its id.
async fn register(cfg: &pipeline_core::Config, schema: &serde_json::Value) -> u32 {
    let url = format!("{}/subjects/{}/versions", cfg.registry.url.trim_end_matches('/'), cfg.registry.subject);
    let body: serde_json::Value = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({"schema": schema.to_string(), "schemaType": "AVRO"}))
        .send()
        .await
        .expect("registry reachable")
        .json()
        .await
        .expect("JSON answer");
    body["id"].as_u64().unwrap_or_else(|| panic!("registration refused: {body}")) as u32
}

fn v2_schema() -> serde_json::Value {
    let mut s = pipeline_core::model::event_avro_schema();
    s["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "loyalty_tier", "type": ["null", "string"], "default": null}));
    s
}

fn event(i: usize) -> UserEvent {
    let mut e = edge_case_events()[0].clone();
    e.id = Uuid::new_v4();
    e.first_name = format!("User{i}");
    e.username = format!("user{i}");
    e.email = format!("user{i}@example.com");
    e.produced_at = chrono::Utc::now();
    e
}

/// One registry-framed message of `event(i)` in v1 (`v2 == None`) or v2.
fn encode(i: usize, v1: (&apache_avro::Schema, u32), v2: Option<(&apache_avro::Schema, u32)>) -> (String, Vec<u8>) {
    let e = event(i);
    let value = match v2 {
        None => pipeline_core::registry::frame(v1.1, &apache_avro::to_avro_datum(v1.0, e.to_avro()).expect("v1")),
        Some((schema, id)) => {
            let Avro::Record(mut fields) = e.to_avro() else { unreachable!("records encode as records") };
            fields.push(("loyalty_tier".into(), Avro::Union(1, Box::new(Avro::String("gold".into())))));
            pipeline_core::registry::frame(id, &apache_avro::to_avro_datum(schema, Avro::Record(fields)).expect("v2"))
        }
    };
    (e.id.to_string(), value)
}

async fn send(producer: &FutureProducer, topic: &str, messages: Vec<(String, Vec<u8>)>) {
    for (key, value) in messages {
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(10))
            .await
            .expect("delivery");
    }
}

/// `pipeline jobs status --json`, run as its own process.
fn status_of(cfg: &pipeline_core::Config) -> (JobStatus, i32) {
    let out = Command::new(pipeline_binary())
        .args(["jobs", "status", "--json"])
        .envs(pipeline_env(cfg))
        .output()
        .expect("run pipeline jobs status");
    let text = String::from_utf8_lossy(&out.stdout);
    let status: JobStatus = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, out.status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_from_another_process_and_a_new_schema_version_picked_up() {
    spark::quiet_client_panics();
    let cfg = isolated("it_schema");
    create_topics(&cfg).await;
    let (status, code) = status_of(&cfg);
    assert_eq!((status.state, code), (JobState::NotSubmitted, 4), "{status}");

    let v1 = apache_avro::Schema::parse(&pipeline_core::model::event_avro_schema()).expect("v1");
    let v1_id = register(&cfg, &pipeline_core::model::event_avro_schema()).await;
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &cfg.kafka.bootstrap_servers).create().expect("producer");
    let submitted = spark::submit(&cfg).await.expect("submit");
    assert_eq!(submitted.schema_ids, vec![v1_id]);

    // Phase 1: 200 v1 messages over ~10 s while another process watches the status.
    let streaming = {
        let (producer, topic, v1) = (producer.clone(), cfg.kafka.topic.clone(), v1.clone());
        tokio::spawn(async move {
            for chunk in 0..10 {
                send(&producer, &topic, (0..20).map(|i| encode(chunk * 20 + i, (&v1, v1_id), None)).collect()).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut batches = Vec::new();
    let started = Instant::now();
    let caught_up = loop {
        let (status, code) = status_of(&cfg);
        assert_eq!((status.state, code), (JobState::Running, 0), "{status}");
        let main = status.queries.iter().find(|q| q.name == cfg.job.query_name).expect("main query listed");
        if let Some(b) = &main.last_batch {
            eprintln!("{}", spark::progress_line(b));
            if batches.last() != Some(&b.batch_id) {
                batches.push(b.batch_id);
            }
            let end: i64 = status.end_offsets.values().sum();
            if streaming.is_finished() && end == 200 && b.lag == Some(0) {
                break b.clone();
            }
        }
        assert!(started.elapsed() < WAIT, "offsets did not reach the topic's end; batches seen {batches:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Batches take from 2 s to a minute on the shared 2-core machine: at least one advance.
    assert!(batches.len() >= 2, "batch ids seen from another process: {batches:?}");
    assert!(batches.windows(2).all(|w| w[0] < w[1]), "batch ids went back: {batches:?}");
    assert!(caught_up.partitions.iter().all(|p| Some(p.offset) == p.end_offset), "{caught_up:?}");
    wait_for_rows(&cfg, 200, WAIT).await;

    // Phase 2: v2 registered by this independent producer; 300 v1 and 500 v2 interleaved.
    let v2_json = v2_schema();
    let v2 = apache_avro::Schema::parse(&v2_json).expect("v2");
    let v2_id = register(&cfg, &v2_json).await;
    assert_ne!(v2_id, v1_id);
    let messages: Vec<(String, Vec<u8>)> = (0..800)
        .map(|i| {
            let new = i % 8 < 5; // 5 of every 8 are v2: 500 v2, 300 v1
            encode(200 + i, (&v1, v1_id), new.then_some((&v2, v2_id)))
        })
        .collect();
    send(&producer, &cfg.kafka.topic, messages).await;

    // The job does not know v2: its batch fails on purpose, and the status says why.
    let failed = eventually("the job to fail on the new schema id", WAIT, || async {
        let (status, code) = status_of(&cfg);
        // Each query fails on its own (after spark.task.maxFailures quick attempts): wait for both.
        (status.state == JobState::Failed).then_some((status, code))
    })
    .await;
    let (status, code) = failed;
    assert_eq!(code, 3, "{status}");
    let main = status.queries.iter().find(|q| q.name == cfg.job.query_name).expect("main query");
    assert_eq!(main.state, QueryState::Failed, "{status}");
    let reason = main.exception.join(" ");
    assert!(reason.contains(&format!("schema id {v2_id} is newer than the Spark job")), "{status}");

    // A resubmit (what the supervisor will do) decodes both versions from the checkpoint.
    let resubmitted = spark::submit(&cfg).await.expect("resubmit");
    assert_eq!(resubmitted.schema_ids, vec![v1_id, v2_id]);
    wait_for_rows(&cfg, 1000, WAIT).await;
    assert_eq!(status_of(&cfg).1, 0);
    assert!(read_topic(&cfg, &cfg.kafka.dead_letter_topic).await.is_empty(), "no dead letters");
    spark::stop(&cfg).await.expect("stop");
    let (status, code) = status_of(&cfg);
    assert_eq!((status.state, code), (JobState::Stopped, 4), "{status}");

    // The local engine, same topic, its own table: every message of both versions.
    let mut local = cfg.clone();
    local.cassandra.table = "created_users_local".into();
    let out = Command::new(pipeline_binary())
        .args(["local", "--until-idle"])
        .envs(pipeline_env(&local))
        .output()
        .expect("run pipeline local");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(row_count(&local).await, 1000);
    assert!(read_topic(&cfg, &cfg.kafka.dead_letter_topic).await.is_empty(), "no dead letters from the local engine");
}
