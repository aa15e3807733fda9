//! Cassandra stops for 20 s while the local engine consumes a steady stream: the engine waits
//! and retries without committing, its memory stays bounded, and once Cassandra is back every
//! produced user is written. A test binary of its own: it stops the shared Cassandra, and
//! cargo runs test binaries one after another.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_cluster::{Cluster, Service};
use pipeline_core::config::SourceKind;
use pipeline_core::shutdown::CancellationToken;
use pipeline_producer::{run, ProduceOptions};
use pipeline_testkit::{create_topic, isolated, pipeline_env, read_topic};
use uuid::Uuid;

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

async fn cassandra_ids(cfg: &pipeline_core::Config) -> HashSet<Uuid> {
    let db = pipeline_testkit::cassandra(cfg).await;
    let mut rows = db
        .query_iter(format!("SELECT id FROM {}.{}", cfg.cassandra.keyspace, cfg.cassandra.table), &[])
        .await
        .expect("select ids")
        .rows_stream::<(Uuid,)>()
        .expect("row type");
    let mut ids = HashSet::new();
    while let Some(r) = rows.next().await {
        ids.insert(r.expect("row").0);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_down_for_20_seconds_loses_nothing_and_memory_stays_bounded() {
    let cfg = isolated("it_outage");
    create_topic(&cfg, &cfg.kafka.topic, 3).await;
    create_topic(&cfg, &cfg.kafka.dead_letter_topic, 1).await;
    pipeline_jobs::tables::ensure_table(&cfg).await.expect("table");

    // A steady stream: 300 users/s for 40 s, produced in the background.
    let count = 12_000;
    let producing = {
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let opts = ProduceOptions {
                source: SourceKind::Synthetic,
                count: Some(count),
                rate: Some(300.0),
                batch: 100,
                interval: None,
                seed: rand::random::<u64>() | 1,
            };
            run(&cfg, opts, CancellationToken::new(), None).await.expect("producer run")
        })
    };

    let mut engine = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["local", "--until-idle"])
        .envs(pipeline_env(&cfg))
        .env("PIPELINE__LOCAL__BATCH_SIZE", "500")
        .env("PIPELINE__LOCAL__IDLE_TIMEOUT_MS", "5000")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the engine");
    let pid = engine.id();

    // Mid-stream: once rows are arriving, stop Cassandra for 20 s.
    let started = Instant::now();
    while cassandra_ids(&cfg).await.len() < 500 {
        assert!(started.elapsed() < Duration::from_secs(120), "no rows within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_before = rss_mib(pid);
    let cluster = Cluster::new(cfg.clone());
    assert_eq!(
        cluster.down(&[Service::Cassandra]).expect("down"),
        vec![Service::Cassandra],
        "Cassandra was not running"
    );
    let mut rss_max = rss_before;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(20) {
        assert!(engine.try_wait().expect("wait").is_none(), "the engine exited while Cassandra was down");
        rss_max = rss_max.max(rss_mib(pid));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cluster.up(&[Service::Cassandra]).await.expect("Cassandra back up");

    let summary = producing.await.expect("producer task");
    assert_eq!(summary.published, count);
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        rss_max = rss_max.max(rss_mib(pid));
        if let Some(status) = engine.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the engine did not drain within 240 s of Cassandra's return");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("engine RSS: {rss_before} MiB before the outage, {rss_max} MiB at most");
    assert!(status.success(), "the engine failed: {status}");
    assert!(rss_max < 512, "engine memory grew to {rss_max} MiB");
    assert!(rss_max < rss_before + 256, "engine memory grew from {rss_before} to {rss_max} MiB during the outage");

    let produced: HashSet<Uuid> =
        read_topic(&cfg, &cfg.kafka.topic).await.iter().filter_map(|r| r.key_str()?.parse().ok()).collect();
    assert_eq!(produced.len(), count as usize);
    assert_eq!(cassandra_ids(&cfg).await, produced, "Cassandra ids == produced ids");
}
