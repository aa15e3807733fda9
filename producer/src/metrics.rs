//! The producer's metrics, in one place (Prometheus names, exported on `/metrics`).

use std::time::Duration;

use metrics::{counter, histogram};

pub fn fetched(source: &'static str, n: usize) {
    counter!("producer_fetched_total", "source" => source).increment(n as u64);
}

pub fn rejected(source: &'static str, n: usize) {
    counter!("producer_rejected_total", "source" => source).increment(n as u64);
}

pub fn duplicates(n: usize) {
    counter!("producer_duplicates_total").increment(n as u64);
}

pub fn audited(n: usize) {
    counter!("producer_audited_total").increment(n as u64);
}

pub fn published(n: usize) {
    counter!("producer_published_total").increment(n as u64);
}

pub fn publish_failed(n: usize) {
    counter!("producer_publish_failed_total").increment(n as u64);
}

pub fn fetch_failed() {
    counter!("producer_fetch_failed_total").increment(1);
}

/// Latency of one stage for one batch: `fetch`, `prepare`, `audit`, `publish` or `mark`.
pub fn stage_latency(stage: &'static str, elapsed: Duration) {
    tracing::trace!(stage, ms = elapsed.as_secs_f64() * 1e3, "batch stage done");
    histogram!("producer_stage_seconds", "stage" => stage).record(elapsed.as_secs_f64());
}
