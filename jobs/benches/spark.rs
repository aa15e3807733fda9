//! `make bench-spark`: what the Spark job sustains on this machine, and produce->Cassandra
//! latency at a steady input rate. Needs the cluster (`make up`).
//!   (1) throughput: BENCH_RECORDS users on the topic first, then the job from submit to the
//!       last row (maxOffsetsPerTrigger and trigger from conf/default.toml);
//!   (2) latency: the job running, users produced at BENCH_RATE/s for 30 s; per row,
//!       WRITETIME (when Cassandra stored it) minus produced_at.

#![allow(clippy::expect_used, clippy::unwrap_used)]

/// The same allocator as the `pipeline` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::config::SourceKind;
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_jobs::spark;
use pipeline_producer::{run as produce, ProduceOptions};
use pipeline_testkit::{config, create_topic, isolated};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fresh(prefix: &str) -> Config {
    let mut c = isolated(prefix);
    c.registry.subject = "users_created-value".into();
    c
}

async fn topics(cfg: &Config) {
    create_topic(cfg, &cfg.kafka.topic, 3).await;
    create_topic(cfg, &cfg.kafka.dead_letter_topic, 1).await;
}

async fn produce_n(cfg: &Config, n: u64, rate: Option<f64>, batch: usize) {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let opts = ProduceOptions { source: SourceKind::Synthetic, count: Some(n), rate, batch, interval: None, seed };
    assert_eq!(produce(cfg, opts, CancellationToken::new(), None).await.expect("produce").published, n);
}

async fn rows(cfg: &Config) -> Vec<(chrono::DateTime<chrono::Utc>, i64)> {
    let db = pipeline_testkit::cassandra(cfg).await;
    let mut pager = db
        .query_iter(
            format!("SELECT produced_at, WRITETIME(email) FROM {}.{}", cfg.cassandra.keyspace, cfg.cassandra.table),
            &[],
        )
        .await
        .expect("select")
        .rows_stream::<(chrono::DateTime<chrono::Utc>, i64)>()
        .expect("types");
    let mut out = Vec::new();
    while let Some(r) = pager.next().await {
        out.push(r.expect("row"));
    }
    out
}

async fn wait_rows(cfg: &Config, n: usize, timeout: Duration) {
    let start = Instant::now();
    loop {
        let db = pipeline_testkit::cassandra(cfg).await;
        let got: i64 = db
            .query_unpaged(format!("SELECT count(*) FROM {}.{}", cfg.cassandra.keyspace, cfg.cassandra.table), &[])
            .await
            .expect("count")
            .into_rows_result()
            .expect("rows")
            .single_row::<(i64,)>()
            .expect("count")
            .0;
        if got as usize >= n {
            return;
        }
        assert!(start.elapsed() < timeout, "{got} of {n} rows after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    spark::quiet_client_panics();
    let n = env_or("BENCH_RECORDS", 60_000);
    let rate = env_or("BENCH_RATE", 500) as f64;
    let base = config();
    println!(
        "Spark job benchmark: trigger {}, maxOffsetsPerTrigger {}, {} executor core(s)",
        base.job.trigger_interval, base.job.max_offsets_per_trigger, base.cluster.memory.spark_worker_cores
    );

    // (1) throughput from a backlog.
    let cfg = fresh("bench_spark");
    topics(&cfg).await;
    produce_n(&cfg, n, None, 2_000).await;
    let t = Instant::now();
    spark::submit(&cfg).await.expect("submit");
    wait_rows(&cfg, n as usize, Duration::from_secs(900)).await;
    let secs = t.elapsed().as_secs_f64();
    let best = spark::status(&cfg)
        .await
        .queries
        .into_iter()
        .filter(|q| q.name == cfg.job.query_name)
        .filter_map(|q| Some(q.last_batch?.processed_rows_per_second))
        .fold(0.0, f64::max);
    spark::stop(&cfg).await.expect("stop");

    // (2) latency at a steady rate with the job already running.
    let lat = fresh("bench_spark_latency");
    topics(&lat).await;
    spark::submit(&lat).await.expect("submit");
    tokio::time::sleep(Duration::from_secs(10)).await; // first (empty) batches done
    let steady = (rate * 30.0) as u64;
    produce_n(&lat, steady, Some(rate), 25).await;
    wait_rows(&lat, steady as usize, Duration::from_secs(300)).await;
    spark::stop(&lat).await.expect("stop");
    let mut latencies: Vec<f64> =
        rows(&lat).await.iter().map(|(p, w)| (*w - p.timestamp_micros()) as f64 / 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];

    println!();
    println!("(1) {n} records from a backlog: {:.0} rows/s from submit to the last row ({secs:.1} s, start-up included); last batch processed {best:.0} rows/s", n as f64 / secs);
    println!(
        "(2) latency produced_at -> written (WRITETIME) at {rate:.0} records/s over {steady} records: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
}
