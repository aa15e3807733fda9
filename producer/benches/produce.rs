//! `make bench-produce`: records/s of each producer stage on this machine, beside Kafka's own
//! producer benchmark at the same record size and acks. Needs the cluster (`make up`).
//!
//! Stages: (1) synthetic source alone; (2) synthetic -> normalise -> Avro -> Kafka, no audit;
//! (3) the full path, synthetic -> audit outbox (PostgreSQL) -> Kafka -> mark published;
//! (4) org.apache.kafka.tools.ProducerPerformance (acks=all, idempotent, same compression).
//! (3) and (4) run BENCH_ROUNDS times (default 2) in alternating order; the ratio uses the means.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use pipeline_core::config::SourceKind;
use pipeline_core::registry::frame_with;
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_producer::audit::OutboxRow;
use pipeline_producer::normalize::normalize;
use pipeline_producer::publish::Publisher;
use pipeline_producer::source::synthetic::SyntheticSource;
use pipeline_producer::source::Source;
use pipeline_producer::{register_event_schema, run, ProduceOptions};
use pipeline_testkit::{alternating_turns, config, create_topic, listed, mean, unique};

/// The same allocator as the `pipeline` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn count() -> u64 {
    std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

#[tokio::main]
async fn main() {
    let n = count();
    let batch = 2_000;
    let mut cfg = config();
    println!(
        "producer benchmark: {n} records, batch {batch}, acks=all, idempotent, compression {}",
        cfg.producer.kafka.compression
    );

    // (1) the synthetic source alone.
    let mut source: Source = SyntheticSource::new(42).into();
    let t = Instant::now();
    let mut generated = 0;
    while generated < n {
        generated += source.fetch(batch.min((n - generated) as usize)).await.expect("fetch").users.len() as u64;
    }
    let source_rate = n as f64 / t.elapsed().as_secs_f64();

    // (2) synthetic -> normalise -> Avro -> Kafka (no audit); batch k is published while
    // batch k+1 is generated, as in the full path.
    cfg.kafka.topic = unique("bench_kafka_only");
    cfg.registry.subject = "users_created-value".into();
    create_topic(&cfg, &cfg.kafka.topic, 3).await;
    let schema_id = register_event_schema(&cfg).await.expect("registry");
    let publisher = Arc::new(Publisher::new(&cfg.kafka, &cfg.producer.kafka).expect("publisher"));
    let mut source: Source = SyntheticSource::new(43).into();
    let t = Instant::now();
    let (mut sent, mut bytes, mut seq) = (0_u64, 0_u64, 0_i64);
    let mut in_flight: Option<tokio::task::JoinHandle<usize>> = None;
    while sent < n {
        let fetched = source.fetch(batch.min((n - sent) as usize)).await.expect("fetch");
        let now = Utc::now();
        let rows: Vec<OutboxRow> = fetched
            .users
            .into_iter()
            .map(|u| {
                let n = normalize(u, "synthetic", now, now).expect("normalise");
                let _payload = n.payload.to_string();
                let value = frame_with(schema_id, 400, |out| n.event.encode_avro(out));
                seq += 1;
                OutboxRow { seq, key: n.event.id.to_string(), value, source: "synthetic".into() }
            })
            .collect();
        bytes += rows.iter().map(|r| r.value.len() as u64).sum::<u64>();
        sent += rows.len() as u64;
        if let Some(previous) = in_flight.take() {
            previous.await.expect("publish task");
        }
        let publisher = publisher.clone();
        in_flight = Some(tokio::spawn(async move {
            let outcome = publisher.publish(&rows, now).await;
            assert!(outcome.failed.is_empty(), "deliveries failed: {:?}", outcome.failed.first());
            outcome.published.len()
        }));
    }
    if let Some(last) = in_flight {
        last.await.expect("publish task");
    }
    let kafka_only_rate = n as f64 / t.elapsed().as_secs_f64();
    let record_size = (bytes / n.max(1)).max(1);

    // (3) the full path and (4) Kafka's own producer benchmark (same record size, acks and
    // compression), BENCH_ROUNDS times in alternating order: on 2 shared cores a run depends on
    // what ran just before it (JIT, page cache, log segments), so neither always goes first.
    let (mut full_rates, mut kafka_rates) = (Vec::new(), Vec::new());
    for (_, full_turn) in alternating_turns(2) {
        if full_turn {
            full_rates.push(full_path(&mut cfg, n, batch).await);
        } else {
            kafka_rates.push(producer_performance(&cfg, n, record_size).await);
        }
    }
    let (full_rate, kafka_rate) = (mean(&full_rates), mean(&kafka_rates));

    println!();
    println!("{:<46} {:>12}", "stage", "records/s");
    println!("{:<46} {:>12.0}", "(1) synthetic source alone", source_rate);
    println!("{:<46} {:>12.0}", "(2) synthetic -> Avro -> Kafka (no audit)", kafka_only_rate);
    println!(
        "{:<46} {:>12.0}   rounds: {}",
        "(3) synthetic -> PostgreSQL outbox -> Kafka",
        full_rate,
        listed(&full_rates)
    );
    println!(
        "{:<46} {:>12.0}   rounds: {}",
        format!("(4) Kafka ProducerPerformance, {record_size} B records"),
        kafka_rate,
        listed(&kafka_rates)
    );
    println!();
    println!("full path / Kafka's own benchmark (means) = {:.2} (goal >= 0.5)", full_rate / kafka_rate);
}

/// (3): `n` synthetic users through the audit outbox to a fresh topic; records/s over the whole
/// run, set-up included (connections, migrations, schema registration, outbox check).
async fn full_path(cfg: &mut Config, n: u64, batch: usize) -> f64 {
    cfg.kafka.topic = unique("bench_full");
    create_topic(cfg, &cfg.kafka.topic, 3).await;
    let opts = ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(n),
        rate: None,
        batch,
        interval: None,
        seed: rand_seed(),
    };
    let summary = run(cfg, opts, CancellationToken::new(), None).await.expect("producer run");
    assert_eq!(summary.published, n, "{summary:?}");
    summary.records_per_sec()
}

/// (4): org.apache.kafka.tools.ProducerPerformance on a fresh topic, with the producer's acks,
/// idempotence, compression, linger and batch size; records/s as it reports them. Its records
/// carry no key or headers (ours carry a 36-byte key and two short headers).
async fn producer_performance(cfg: &Config, n: u64, record_size: u64) -> f64 {
    let topic = unique("bench_kafka_perf");
    create_topic(cfg, &topic, 3).await;
    let lib = cfg.cluster.artifacts_dir.join("kafka/lib/*");
    let out = Command::new("java")
        .args(["-Xmx512m", "-cp", &lib.to_string_lossy(), "org.apache.kafka.tools.ProducerPerformance"])
        .args(["--topic", &topic, "--num-records", &n.to_string(), "--record-size", &record_size.to_string()])
        .args(["--throughput", "-1", "--producer-props"])
        .arg(format!("bootstrap.servers={}", cfg.kafka.bootstrap_servers))
        .args(["acks=all", "enable.idempotence=true"])
        .arg(format!("compression.type={}", cfg.producer.kafka.compression))
        .arg(format!("linger.ms={}", cfg.producer.kafka.linger_ms))
        .arg(format!("batch.size={}", cfg.producer.kafka.batch_bytes))
        .output()
        .expect("run ProducerPerformance (make deps installs kafka-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()
        .and_then(|l| l.split(" records/sec").next()?.rsplit(", ").next()?.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!("cannot read ProducerPerformance output:\n{text}\n{}", String::from_utf8_lossy(&out.stderr))
        })
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7) | 1
}
