//! `pipeline submit` on the real cluster: exactly the produced users land in Cassandra with the
//! oracle's values, malformed messages are dead-lettered with reasons, stop and resubmit
//! resumes from the checkpoint without reprocessing.

use std::time::Duration;

use pipeline_jobs::spark;

use crate::oracle::{
    check_rows, create_topics, dead_letter_reasons, events_on_topic, isolated, produce, rows, send_bad_messages,
    wait_for_rows,
};

const WAIT: Duration = Duration::from_secs(240);

#[tokio::test]
async fn spark_job_end_to_end_with_dead_letters_and_resume() {
    spark::quiet_client_panics();
    let cfg = isolated("it_spark");
    create_topics(&cfg).await;
    produce(&cfg, 1000, rand::random::<u64>() | 1).await;
    let bad = send_bad_messages(&cfg).await;

    let submitted = spark::submit(&cfg).await.expect("submit");
    assert!(!submitted.already_running);
    // While it runs, the master lists the Connect application as running.
    let master: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{}/json/", cfg.spark.master_ui_port))
        .await
        .expect("master JSON")
        .json()
        .await
        .expect("JSON");
    let apps = master["activeapps"].as_array().expect("activeapps");
    assert!(apps.iter().any(|a| a["state"] == "RUNNING"), "no running application: {master}");
    // Submitting again does not start a second copy.
    let again = spark::submit(&cfg).await.expect("second submit");
    assert!(again.already_running);
    assert_eq!(again.query.id, submitted.query.id);

    wait_for_rows(&cfg, 1000, WAIT).await;
    let events = events_on_topic(&cfg).await;
    let first = check_rows(&rows(&cfg).await, &events, "spark");
    assert_eq!(first.len(), 1000);

    let reasons = dead_letter_reasons(&cfg, bad.len(), WAIT).await;
    let mut missing: Vec<&str> = bad.clone();
    for reason in &reasons {
        if let Some(i) = missing.iter().position(|w| reason.contains(w)) {
            missing.remove(i);
        }
    }
    assert!(missing.is_empty(), "no dead letter mentions {missing:?}; reasons: {reasons:?}");

    // Stop, produce 500 more, resubmit: resumes from the checkpoint.
    let stopped = spark::stop(&cfg).await.expect("stop");
    assert_eq!(stopped.len(), 2);
    let status = spark::status(&cfg).await;
    assert_eq!(status.state, spark::JobState::Stopped, "{status}");
    assert!(status.queries.iter().all(|q| q.state == spark::QueryState::Stopped), "{status}");
    produce(&cfg, 500, rand::random::<u64>() | 1).await;
    let resumed = spark::submit(&cfg).await.expect("resubmit");
    assert_eq!(resumed.query.id, submitted.query.id, "the checkpoint keeps the query id");
    wait_for_rows(&cfg, 1500, WAIT).await;
    let events = events_on_topic(&cfg).await;
    let all = check_rows(&rows(&cfg).await, &events, "spark");
    assert_eq!(all.len(), 1500);
    for (id, row) in &first {
        assert_eq!(all[id].processed_at, row.processed_at, "row {id} was processed twice");
    }
    // No new dead letters from the resumed run.
    assert_eq!(dead_letter_reasons(&cfg, bad.len(), WAIT).await.len(), bad.len());
    spark::stop(&cfg).await.expect("final stop");
}
