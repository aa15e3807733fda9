//! SIGKILL the producer mid-run, start it again: every audited record is in Kafka.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipeline_producer::source::synthetic::SyntheticSource;
use pipeline_producer::source::Source;
use pipeline_testkit::{create_topic, isolated, pipeline_env, read_topic};
use uuid::Uuid;

fn producer(cfg: &pipeline_core::Config, seed: u64, count: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.args(["produce", "--source", "synthetic", "--quiet", "--batch", "500"])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .envs(pipeline_env(cfg))
        .stdout(Stdio::null());
    cmd
}

#[tokio::test]
async fn sigkill_mid_run_then_restart_publishes_every_audited_record() {
    let cfg = isolated("it_crash");
    let topic = cfg.kafka.topic.clone();
    create_topic(&cfg, &topic, 3).await;
    let seed = rand::random::<u64>() | 1;
    let count = 40_000;

    let mut source: Source = SyntheticSource::new(seed).into();
    let users = source.fetch(count as usize).await.expect("synthetic users").users;
    let ids: Vec<Uuid> =
        users.iter().map(|u| u["login"]["uuid"].as_str().unwrap_or_default().parse().expect("uuid")).collect();

    let db = pipeline_testkit::audit_db(&cfg).await;
    let counts = || async {
        let row = db
            .query_one("SELECT count(*), count(published_at) FROM audit.users WHERE user_id = ANY($1)", &[&ids])
            .await
            .expect("count");
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };

    // First run: killed with SIGKILL once a few batches are audited.
    let mut child = producer(&cfg, seed, count).spawn().expect("start the producer");
    let started = Instant::now();
    loop {
        let (audited, _) = counts().await;
        if audited >= 2_000 {
            break;
        }
        assert!(child.try_wait().expect("wait").is_none(), "the producer ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "nothing audited within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let (audited, published) = counts().await;
    assert!(audited < count as i64, "the kill came too late to test anything ({audited} audited)");
    eprintln!("killed with {audited} audited, {published} marked published");

    // Second run: recovers the outbox, skips what was audited, produces the rest.
    let status = producer(&cfg, seed, count).status().expect("restart the producer");
    assert!(status.success(), "second run failed: {status}");

    let (audited, published) = counts().await;
    assert_eq!((audited, published), (count as i64, count as i64), "every user audited and marked published");
    let records = read_topic(&cfg, &topic).await;
    let keys: HashSet<Uuid> = records.iter().map(|r| r.key_str().expect("key").parse().expect("uuid key")).collect();
    assert_eq!(keys, ids.iter().copied().collect::<HashSet<_>>(), "distinct keys in the topic == audited ids");
    assert!(records.len() >= count as usize, "at-least-once: {} records", records.len());
}
