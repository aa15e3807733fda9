//! The local engine's metrics (Prometheus names, exported on `/metrics`).

use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub fn consumed(n: usize) {
    counter!("local_consumed_total").increment(n as u64);
}

pub fn decoded(n: usize) {
    counter!("local_decoded_total").increment(n as u64);
}

pub fn dead_lettered(n: usize) {
    counter!("local_dead_lettered_total").increment(n as u64);
}

pub fn written(n: usize) {
    counter!("local_written_total").increment(n as u64);
}

pub fn write_retry() {
    counter!("local_write_retries_total").increment(1);
}

pub fn batch_latency(elapsed: Duration) {
    histogram!("local_batch_seconds").record(elapsed.as_secs_f64());
}

pub fn lag(partition: i32, lag: i64) {
    gauge!("local_consumer_lag", "partition" => partition.to_string()).set(lag as f64);
}
