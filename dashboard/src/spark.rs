//! The Spark job's queries as the page shows them.
//!
//! [`queries`] is the single place that asks Spark: it goes through
//! `pipeline_jobs::spark::StatusClient` (what `pipeline jobs status` prints, with one Spark
//! Connect session and one Kafka client kept for the dashboard's lifetime) and maps each
//! query's latest progress. Rewire it here when that library function changes.
//!
//! Throttled: every 2 s while someone looked at the page or the API in the last minute
//! ([`Viewed`]), every 15 s otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipeline_core::Config;
use pipeline_jobs::spark::StatusClient;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::state::{self, Shared, SparkQueryView, SparkView};

/// When the page or the API was last read (ms since the epoch), for the throttles.
#[derive(Debug, Clone, Default)]
pub struct Viewed(Arc<AtomicI64>);

impl Viewed {
    pub fn touch(&self) {
        self.0.store(state::now_ms(), Ordering::Relaxed);
    }

    /// True when someone read the page or the API within `within`.
    pub fn recently(&self, within: Duration) -> bool {
        state::now_ms() - self.0.load(Ordering::Relaxed) < within.as_millis() as i64
    }
}

/// Poll period while watched, and while nobody looks.
const WATCHED_PERIOD: Duration = Duration::from_secs(2);
const IDLE_PERIOD: Duration = Duration::from_secs(15);

/// The job's queries now, from the same status `pipeline jobs status --json` prints.
pub async fn queries(config: &Config, client: &mut StatusClient) -> Result<Vec<SparkQueryView>, String> {
    let status = match tokio::time::timeout(Duration::from_secs(10), client.status(config)).await {
        Ok(s) => s,
        Err(_) => {
            // Half-way through a call: start over with new clients.
            *client = StatusClient::new();
            return Err("Spark Connect did not answer within 10 s".to_string());
        }
    };
    if status.queries.is_empty() {
        if let Some(e) = &status.error {
            return Err(e.clone());
        }
    }
    let checkpoints =
        std::path::absolute(&config.job.checkpoint_dir).unwrap_or_else(|_| config.job.checkpoint_dir.clone());
    Ok(status
        .queries
        .into_iter()
        .map(|q| {
            let batch = q.last_batch.as_ref();
            let mut view = SparkQueryView {
                name: q.name.clone(),
                id: q.id.clone().unwrap_or_default(),
                run_id: q.run_id.clone().unwrap_or_default(),
                active: q.state == pipeline_jobs::spark::QueryState::Running,
                batch_id: batch.map(|b| b.batch_id),
                input_rows_per_sec: batch.map(|b| b.input_rows_per_second).unwrap_or(0.0),
                processed_rows_per_sec: batch.map(|b| b.processed_rows_per_second).unwrap_or(0.0),
                batch_duration_ms: batch.map(|b| b.duration_ms),
                num_input_rows: batch.map(|b| b.input_rows),
                timestamp: batch.and_then(|b| b.timestamp.clone()),
                end_offsets: batch
                    .map(|b| b.partitions.iter().map(|p| (p.partition, p.offset)).collect())
                    .unwrap_or_default(),
                checkpoint_batch: None,
                checkpoint_offsets: BTreeMap::new(),
                status: Some(format!("{:?}", q.state).to_lowercase()).map(|s| match &q.message {
                    Some(m) => format!("{s}: {m}"),
                    None => s,
                }),
                last_error: (!q.exception.is_empty()).then(|| q.exception.join("\n")),
            };
            if let Some((batch, offsets)) = checkpoint(&checkpoints.join(&view.name)) {
                view.checkpoint_batch = Some(batch);
                view.checkpoint_offsets = offsets;
            }
            view
        })
        .collect())
}

/// The latest committed batch of a Structured Streaming checkpoint (`commits/<n>`) and the end
/// offsets its `offsets/<n>` file recorded (its last line: `{topic: {partition: offset}}`).
pub fn checkpoint(dir: &Path) -> Option<(i64, BTreeMap<i32, i64>)> {
    let batch = std::fs::read_dir(dir.join("commits"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .max()?;
    let text = std::fs::read_to_string(dir.join("offsets").join(batch.to_string())).ok()?;
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{'))?;
    let topics: Value = serde_json::from_str(last).ok()?;
    let mut offsets = BTreeMap::new();
    for partitions in topics.as_object()?.values() {
        for (partition, offset) in partitions.as_object().into_iter().flatten() {
            if let (Ok(partition), Some(offset)) = (partition.parse::<i32>(), offset.as_i64()) {
                offsets.insert(partition, offset);
            }
        }
    }
    Some((batch, offsets))
}

/// A query's view from its latest progress JSON (Spark's StreamingQueryProgress).
pub fn from_progress(name: &str, progress: Option<&Value>) -> SparkQueryView {
    let p = progress.unwrap_or(&Value::Null);
    let num = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut end_offsets = BTreeMap::new();
    if let Some(sources) = p.get("sources").and_then(Value::as_array) {
        for source in sources {
            // endOffset is an object {topic: {partition: offset}}, sometimes serialised as a string.
            let end = match source.get("endOffset") {
                Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
                Some(v) => v.clone(),
                None => Value::Null,
            };
            if let Some(topics) = end.as_object() {
                for partitions in topics.values() {
                    for (partition, offset) in partitions.as_object().into_iter().flatten() {
                        if let (Ok(partition), Some(offset)) = (partition.parse::<i32>(), offset.as_i64()) {
                            end_offsets.insert(partition, offset);
                        }
                    }
                }
            }
        }
    }
    SparkQueryView {
        name: name.to_string(),
        id: String::new(),
        run_id: String::new(),
        active: false,
        batch_id: p.get("batchId").and_then(Value::as_i64),
        input_rows_per_sec: num("inputRowsPerSecond"),
        processed_rows_per_sec: num("processedRowsPerSecond"),
        batch_duration_ms: p.pointer("/durationMs/triggerExecution").and_then(Value::as_i64),
        num_input_rows: p.get("numInputRows").and_then(Value::as_i64),
        timestamp: p.get("timestamp").and_then(Value::as_str).map(str::to_string),
        end_offsets,
        checkpoint_batch: None,
        checkpoint_offsets: BTreeMap::new(),
        status: None,
        last_error: p.get("exception").and_then(Value::as_str).map(str::to_string),
    }
}

/// Polls the job (every 2 s while watched, see [`Viewed`]); a new batch of the main or
/// dead-letter query adds chart points.
pub async fn run(config: Config, shared: Shared, viewed: Viewed, shutdown: CancellationToken) {
    let mut client = StatusClient::new();
    let links = vec![
        ("Spark master".to_string(), format!("http://127.0.0.1:{}", config.spark.master_ui_port)),
        ("Spark worker".to_string(), format!("http://127.0.0.1:{}", config.spark.worker_ui_port)),
        ("application".to_string(), format!("http://127.0.0.1:{}", config.spark.app_ui_port)),
        ("streaming queries".to_string(), format!("http://127.0.0.1:{}/StreamingQuery/", config.spark.app_ui_port)),
    ];
    let mut last_batch: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_error: BTreeMap<String, String> = BTreeMap::new();
    while !shutdown.is_cancelled() {
        let started = std::time::Instant::now();
        match queries(&config, &mut client).await {
            Ok(mut qs) => {
                let at = state::now_ms();
                // One point per round and chart (both queries' new batches on one x).
                let (mut rows_point, mut duration_point) = (None, [None, None]);
                for q in &mut qs {
                    match &q.last_error {
                        Some(e) => {
                            last_error.insert(q.name.clone(), e.clone());
                        }
                        None => q.last_error = last_error.get(&q.name).cloned(),
                    }
                    let Some(batch) = q.batch_id else { continue };
                    if last_batch.get(&q.name) == Some(&batch) {
                        continue;
                    }
                    last_batch.insert(q.name.clone(), batch);
                    let duration = q.batch_duration_ms.map(|d| d as f64);
                    if q.name == config.job.query_name {
                        rows_point = Some([Some(q.input_rows_per_sec), Some(q.processed_rows_per_sec)]);
                        duration_point[0] = duration;
                    } else if q.name == config.job.dead_letter_query_name {
                        duration_point[1] = duration;
                    }
                }
                state::update(&shared, |s| {
                    if let Some(point) = rows_point {
                        s.charts.spark_rows.push(at, &point);
                    }
                    if duration_point.iter().any(Option::is_some) {
                        s.charts.spark_duration.push(at, &duration_point);
                    }
                    s.spark.set(SparkView { queries: qs, links: links.clone() });
                });
            }
            Err(e) => state::update(&shared, |s| {
                s.spark.fail(e);
                if s.spark.data.is_none() {
                    s.spark.data = Some(SparkView { queries: Vec::new(), links: links.clone() });
                }
            }),
        }
        // Idle: wake every 2 s to notice a viewer, ask Spark only once the idle period passed.
        loop {
            tokio::select! {
                _ = tokio::time::sleep(WATCHED_PERIOD) => {}
                _ = shutdown.cancelled() => return,
            }
            if viewed.recently(Duration::from_secs(60)) || started.elapsed() >= IDLE_PERIOD {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_maps_batch_rates_duration_and_offsets() {
        let p = serde_json::json!({
            "batchId": 7, "numInputRows": 500, "inputRowsPerSecond": 250.0, "processedRowsPerSecond": 900.5,
            "timestamp": "2026-12-04T15:00:00.000Z",
            "durationMs": {"triggerExecution": 640},
            "sources": [{"endOffset": "{\"users_created\":{\"0\":10,\"1\":20,\"2\":30}}"}]
        });
        let v = from_progress("q", Some(&p));
        assert_eq!(v.batch_id, Some(7));
        assert_eq!(v.batch_duration_ms, Some(640));
        assert_eq!(v.end_offsets.get(&2), Some(&30));
        assert_eq!(v.end_offsets.values().sum::<i64>(), 60);
        assert!((v.processed_rows_per_sec - 900.5).abs() < 1e-9);
        let dir = std::env::temp_dir().join(format!("dashboard-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("commits")).unwrap();
        std::fs::create_dir_all(dir.join("offsets")).unwrap();
        for n in ["0", "1", "2"] {
            std::fs::write(dir.join("commits").join(n), "v1\n{}").unwrap();
        }
        std::fs::write(dir.join("commits").join(".2.crc"), "x").unwrap();
        std::fs::write(dir.join("offsets").join("2"), "v1\n{\"batchWatermarkMs\":0}\n{\"t\":{\"0\":5,\"1\":7}}")
            .unwrap();
        std::fs::write(dir.join("offsets").join("3"), "v1\n{}\n{\"t\":{\"0\":9,\"1\":9}}").unwrap();
        let (batch, offsets) = checkpoint(&dir).unwrap();
        assert_eq!(batch, 2, "the latest committed batch, not the planned one");
        assert_eq!(offsets.values().sum::<i64>(), 12);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(checkpoint(&dir).is_none());
        let none = from_progress("q", None);
        assert_eq!(none.batch_id, None);
        assert!(none.end_offsets.is_empty());
    }
}
