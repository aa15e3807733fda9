//! The local DataFusion engine against real Kafka and Cassandra: values equal to the oracle,
//! identical rows to the Spark job (parity), every bad-message shape dead-lettered, and
//! nothing lost when the engine is killed and restarted.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_jobs::local::{run, LocalOptions};
use pipeline_jobs::spark;
use uuid::Uuid;

use crate::oracle::{
    check_rows, create_topics, dead_letter_reasons, edge_case_events, events_on_topic, isolated, produce,
    publish_events, row_count, rows, send_bad_messages, wait_for_rows, Row,
};

const WAIT: Duration = Duration::from_secs(240);

async fn run_until_idle(cfg: &Config) -> pipeline_jobs::local::LocalSummary {
    let opts = LocalOptions { until_idle: true, max_records: None };
    tokio::time::timeout(WAIT, run(cfg, opts, CancellationToken::new()))
        .await
        .expect("idle within 240 s")
        .expect("local run")
}

fn local_config(prefix: &str) -> Config {
    isolated(prefix)
}

#[tokio::test]
async fn local_engine_rows_equal_the_oracle_and_bad_messages_are_dead_lettered() {
    let cfg = local_config("it_local");
    create_topics(&cfg).await;
    produce(&cfg, 400, rand::random::<u64>() | 1).await;
    publish_events(&cfg, &edge_case_events()).await;
    let mut bad = send_bad_messages(&cfg).await;
    // Shapes only a client can send: a huge framed value (900 KB of junk).
    {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
            .create()
            .expect("producer");
        let huge = pipeline_core::registry::frame(1, &vec![0xAB; 900 * 1024]);
        p.send(FutureRecord::to(&cfg.kafka.topic).key("huge").payload(&huge), Duration::from_secs(10))
            .await
            .expect("send");
        bad.push("");
    }
    let total_valid = 400 + edge_case_events().len();

    let summary = run_until_idle(&cfg).await;
    assert_eq!(summary.written as usize, total_valid, "{summary:?}");
    assert_eq!(summary.dead_lettered as usize, bad.len(), "{summary:?}");
    assert_eq!(summary.consumed as usize, total_valid + bad.len());

    let events = events_on_topic(&cfg).await;
    let by_id = check_rows(&rows(&cfg).await, &events, "datafusion");
    assert_eq!(by_id.len(), total_valid);
    let reasons = dead_letter_reasons(&cfg, bad.len(), WAIT).await;
    let mut missing = bad.clone();
    for r in &reasons {
        if let Some(i) = missing.iter().position(|w| !w.is_empty() && r.contains(w)) {
            missing.remove(i);
        } else if let Some(i) = missing.iter().position(|w| w.is_empty()) {
            missing.remove(i);
        }
    }
    assert!(missing.is_empty(), "no dead letter mentions {missing:?}; reasons: {reasons:?}");

    // A second run finds nothing new: offsets were committed after the writes.
    let again = run_until_idle(&cfg).await;
    assert_eq!(again.consumed, 0, "{again:?}");
}

#[tokio::test]
async fn spark_and_datafusion_write_identical_rows() {
    spark::quiet_client_panics();
    let spark_cfg = local_config("it_parity");
    create_topics(&spark_cfg).await;
    produce(&spark_cfg, 300, rand::random::<u64>() | 1).await;
    publish_events(&spark_cfg, &edge_case_events()).await;
    let n = 300 + edge_case_events().len();

    let mut local_cfg = spark_cfg.clone();
    local_cfg.cassandra.table = "created_users_local".into();
    let summary = run_until_idle(&local_cfg).await;
    assert_eq!(summary.written as usize, n);

    spark::submit(&spark_cfg).await.expect("submit");
    let waited = tokio::time::timeout(WAIT, wait_for_rows(&spark_cfg, n, WAIT)).await;
    if waited.is_err() {
        // Say why before failing: the queries' progress and the dead letters.
        eprint!("{}", spark::status(&spark_cfg).await);
        let dlq = pipeline_testkit::read_topic(&spark_cfg, &spark_cfg.kafka.dead_letter_topic).await;
        eprintln!("dead letters: {:?}", dlq.iter().map(|r| r.header("reason").map(String::from)).collect::<Vec<_>>());
        panic!("the Spark job did not write {n} rows within {WAIT:?}");
    }
    spark::stop(&spark_cfg).await.expect("stop");

    let normalise = |rows: Vec<Row>| -> HashMap<Uuid, Row> {
        rows.into_iter()
            .map(|mut r| {
                r.engine = String::new();
                r.processed_at = chrono::DateTime::UNIX_EPOCH;
                (r.id, r)
            })
            .collect()
    };
    let from_spark = normalise(rows(&spark_cfg).await);
    let from_local = normalise(rows(&local_cfg).await);
    assert_eq!(from_spark.len(), n);
    assert_eq!(from_local.len(), n);
    for (id, row) in &from_spark {
        assert_eq!(Some(row), from_local.get(id), "engines disagree on {id}");
    }
    // And both agree with the oracle, edge cases included.
    let events = events_on_topic(&spark_cfg).await;
    check_rows(&rows(&spark_cfg).await, &events, "spark");
    check_rows(&rows(&local_cfg).await, &events, "datafusion");
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_loses_nothing() {
    let cfg = local_config("it_local_kill");
    create_topics(&cfg).await;
    let count = 30_000;
    produce(&cfg, count, rand::random::<u64>() | 1).await;
    pipeline_jobs::tables::ensure_table(&cfg).await.expect("table");

    let mut child = local_command(&cfg, false).spawn().expect("start the engine");
    let started = Instant::now();
    loop {
        let n = row_count(&cfg).await;
        if n > 0 {
            break;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the engine ended before it could be killed");
        assert!(started.elapsed() < WAIT, "no row written within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = row_count(&cfg).await;
    assert!(at_kill < count as usize, "the kill came too late ({at_kill} rows)");

    let status = local_command(&cfg, true).status().expect("restart the engine");
    assert!(status.success(), "restarted engine failed: {status}");
    let ids: HashSet<Uuid> = rows(&cfg).await.into_iter().map(|r| r.id).collect();
    let produced: HashSet<Uuid> = events_on_topic(&cfg).await.into_keys().collect();
    assert_eq!(produced.len(), count as usize);
    assert_eq!(ids, produced, "Cassandra ids == produced ids");
}

/// `pipeline local` as a separate process, configured for the test through the environment.
fn local_command(cfg: &Config, until_idle: bool) -> Command {
    let mut cmd = Command::new(crate::oracle::pipeline_binary());
    cmd.arg("local")
        .envs(pipeline_testkit::pipeline_env(cfg))
        .env("PIPELINE__LOCAL__BATCH_SIZE", "1000")
        .stdout(Stdio::null());
    if until_idle {
        cmd.arg("--until-idle");
    }
    cmd
}
