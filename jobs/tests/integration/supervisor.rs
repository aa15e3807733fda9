//! The job supervisor (the library function `pipeline supervise` runs) against the real
//! cluster: a query stopped behind its back is resubmitted from the checkpoint with no command
//! typed; after `jobs stop` the job stays stopped through several of its checks.

use std::time::{Duration, Instant};

use pipeline_core::shutdown::CancellationToken;
use pipeline_jobs::spark;

use crate::oracle::{create_topics, isolated, produce, wait_for_rows};

const WAIT: Duration = Duration::from_secs(240);

async fn wait_for_state(cfg: &pipeline_core::Config, want: spark::JobState, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = spark::status(cfg).await;
        if status.state == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "job not {want:?} within {within:?}: {status}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_dead_query_is_resubmitted_and_a_stopped_job_stays_stopped() {
    spark::quiet_client_panics();
    let cfg = isolated("it_supervise");
    create_topics(&cfg).await;
    produce(&cfg, 300, rand::random::<u64>() | 1).await;
    spark::submit(&cfg).await.expect("submit");
    wait_for_rows(&cfg, 300, WAIT).await;

    let shutdown = CancellationToken::new();
    let supervisor = {
        let (cfg, shutdown) = (cfg.clone(), shutdown.clone());
        tokio::spawn(async move { spark::supervisor::run(&cfg, Duration::from_secs(1), shutdown).await })
    };

    // The main query dies behind the supervisor's back (the record still says "running").
    let session = spark::connect(&cfg).await.expect("connect");
    for q in session.streams().active().await.expect("active queries") {
        if q.name().as_deref() == Some(cfg.job.query_name.as_str()) {
            q.stop().await.expect("stop the main query");
        }
    }
    let killed = Instant::now();
    wait_for_state(&cfg, spark::JobState::Running, Duration::from_secs(180)).await;
    println!("main query back {:.1} s after it was stopped", killed.elapsed().as_secs_f64());
    produce(&cfg, 200, rand::random::<u64>() | 1).await;
    wait_for_rows(&cfg, 500, WAIT).await;

    // The user's stop is final: several checks later nothing was restarted.
    spark::stop(&cfg).await.expect("jobs stop");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let status = spark::status(&cfg).await;
    assert_eq!(status.state, spark::JobState::Stopped, "{status}");
    shutdown.cancel();
    supervisor.await.expect("supervisor task");
}
