//! The job's supervisor: keeps the Spark job in the state the user asked for.
//!
//! `submit` records "running" and `jobs stop` records "stopped" in the job record
//! ([`JobRecord`]). While the record says running, the supervisor reads the job's status (the
//! same one `jobs status` prints) and, when a query has terminated with an error or the Connect
//! server came back without the queries, resubmits from the checkpoints after a doubling
//! backoff. `submit` itself starts only the queries that are not active, and one supervisor
//! runs per state folder, so two copies are never started. A stopped or never-submitted job is
//! left alone. Each action is logged with its reason and counted in
//! `pipeline_job_resubmits_total{outcome}`. It keeps one Spark Connect session and one Kafka
//! client between looks ([`StatusClient`]), re-created after an error.

use std::time::{Duration, Instant};

use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;

use super::{submit, DesiredState, JobRecord, JobState, StatusClient};

/// First and largest wait between two resubmits of a job that keeps failing.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// What the supervisor decides for one look at the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do (running, stopped by the user, never submitted).
    Leave,
    /// The Connect server does not answer: the service watchdog brings it back; wait.
    Wait(String),
    /// Resubmit from the checkpoints, for this reason.
    Resubmit(String),
}

/// The decision for a job whose wish is `desired` and whose status is `state` (`reason`: the
/// first failure the status names).
pub fn decide(desired: Option<DesiredState>, state: JobState, reason: Option<String>) -> Decision {
    if desired != Some(DesiredState::Running) {
        return Decision::Leave;
    }
    match state {
        JobState::Running | JobState::Stopped | JobState::NotSubmitted => Decision::Leave,
        JobState::Unreachable => Decision::Wait(reason.unwrap_or_else(|| "Spark Connect does not answer".into())),
        JobState::Degraded | JobState::Failed => {
            Decision::Resubmit(reason.unwrap_or_else(|| format!("the job is {state:?}").to_lowercase()))
        }
    }
}

/// Runs until `shutdown`, looking every `check` interval.
pub async fn run(config: &Config, check: Duration, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_BASE;
    let mut next_try = Instant::now();
    // One Spark Connect session and Kafka client for the supervisor's lifetime.
    let mut reader = StatusClient::new();
    tracing::info!(record = %JobRecord::path(config).display(), "job supervisor running");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(check) => {}
        }
        let desired = match JobRecord::load(config) {
            Ok(record) => record.map(|r| r.desired),
            Err(e) => {
                tracing::warn!("cannot read the job record: {e}");
                continue;
            }
        };
        if desired != Some(DesiredState::Running) {
            backoff = BACKOFF_BASE;
            continue;
        }
        let st = reader.status(config).await;
        let reason = st
            .queries
            .iter()
            .find_map(|q| q.exception.first().map(|e| format!("{} {:?}: {e}", q.name, q.state).to_lowercase()))
            .or(st.error.clone());
        match decide(desired, st.state, reason) {
            Decision::Leave => backoff = BACKOFF_BASE,
            Decision::Wait(why) => tracing::debug!("job supervisor waiting: {why}"),
            Decision::Resubmit(why) => {
                if Instant::now() < next_try {
                    continue;
                }
                tracing::warn!(reason = %why, "the Spark job is not running as asked: resubmitting from the checkpoint");
                match submit(config).await {
                    Ok(_) => {
                        metrics::counter!("pipeline_job_resubmits_total", "outcome" => "ok").increment(1);
                        tracing::info!("Spark job resubmitted");
                        backoff = BACKOFF_BASE;
                        next_try = Instant::now() + BACKOFF_BASE;
                    }
                    Err(e) => {
                        metrics::counter!("pipeline_job_resubmits_total", "outcome" => "failed").increment(1);
                        tracing::error!("resubmit failed (next try in {backoff:?}): {e}");
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_job_asked_to_run_and_not_running_is_resubmitted() {
        let running = Some(DesiredState::Running);
        assert_eq!(decide(running, JobState::Running, None), Decision::Leave);
        assert!(matches!(decide(running, JobState::Failed, Some("boom".into())), Decision::Resubmit(r) if r == "boom"));
        assert!(matches!(decide(running, JobState::Degraded, None), Decision::Resubmit(_)));
        assert!(matches!(decide(running, JobState::Unreachable, None), Decision::Wait(_)));
        // The user's stop wins, whatever the status says.
        for state in [JobState::Failed, JobState::Degraded, JobState::Stopped] {
            assert_eq!(decide(Some(DesiredState::Stopped), state, None), Decision::Leave);
        }
        assert_eq!(decide(None, JobState::NotSubmitted, None), Decision::Leave);
    }
}
