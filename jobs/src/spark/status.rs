//! The job's status as any process sees it: `pipeline jobs status [--json]`, `submit --follow`,
//! the dashboard, Airflow. [`JobStatus`] is the documented, stable JSON form (`format` = 1;
//! fields are only ever added).
//!
//! Spark Connect lists only active queries, so the query ids recorded at submit
//! ([`super::JobRecord`]) are used to find a terminated query and its exception. The latest
//! batch is read with `lastProgress` (spark-connect-rs 0.0.2's `recent_progress()` returns only
//! the *first* element of the list, the oldest progress: the cause of "batch 0 forever").

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pipeline_core::Config;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spark_connect_rs::spark::{StreamingQueryInstanceId, WriteStreamOperationStartResult};
use spark_connect_rs::streaming::StreamingQuery;
use spark_connect_rs::SparkSession;

use super::guarded;
use super::record::{DesiredState, JobRecord};
use super::status_client::{end_offsets, StatusClient};

/// The job as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Every query of the job is active.
    Running,
    /// Some queries are active, others terminated.
    Degraded,
    /// The job should run but no query is active (failed, or lost with the Connect server).
    Failed,
    /// The Connect server does not answer.
    Unreachable,
    /// Stopped by the user (`pipeline jobs stop`).
    Stopped,
    /// Never submitted with this checkpoint directory.
    NotSubmitted,
}

impl JobState {
    /// The CLI's exit code: 0 running, 3 degraded or failed, 4 not submitted (or stopped).
    pub fn exit_code(self) -> u8 {
        match self {
            JobState::Running => 0,
            JobState::Degraded | JobState::Failed | JobState::Unreachable => 3,
            JobState::Stopped | JobState::NotSubmitted => 4,
        }
    }
}

/// One query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryState {
    Running,
    /// Terminated without an exception (stopped).
    Stopped,
    /// Terminated with an exception.
    Failed,
    /// Recorded at submit, unknown to the Connect server now (it restarted).
    Lost,
    /// Not started in this session.
    NotStarted,
}

/// `jobs status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Version of this JSON form.
    pub format: u32,
    pub state: JobState,
    pub exit_code: u8,
    pub checked_at: DateTime<Utc>,
    /// What the user asked for last (`submit` or `jobs stop`), when known.
    pub desired: Option<DesiredState>,
    pub topic: String,
    /// The topic's end offsets (high watermarks) by partition, read from Kafka now.
    pub end_offsets: BTreeMap<i32, i64>,
    /// Why the status is incomplete (Connect or Kafka unreachable), if it is.
    pub error: Option<String>,
    pub queries: Vec<QueryStatus>,
}

/// One streaming query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryStatus {
    pub name: String,
    pub id: Option<String>,
    pub run_id: Option<String>,
    pub state: QueryState,
    /// Spark's status message (e.g. "Waiting for data to arrive").
    pub message: Option<String>,
    /// The first lines of the exception that terminated the query.
    pub exception: Vec<String>,
    pub last_batch: Option<BatchProgress>,
}

/// The latest micro-batch, as Spark's UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchProgress {
    pub batch_id: i64,
    pub timestamp: Option<String>,
    pub input_rows: i64,
    pub input_rows_per_second: f64,
    pub processed_rows_per_second: f64,
    pub duration_ms: i64,
    /// Offsets the batch read up to, per partition, with the topic's end offset and the lag.
    pub partitions: Vec<PartitionOffset>,
    /// Sum of the partitions' lag (records not yet in a batch), when the end offsets are known.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub partition: i32,
    pub offset: i64,
    pub end_offset: Option<i64>,
    pub lag: Option<i64>,
}

/// Reads Spark's progress JSON (one `StreamingQueryProgress`), with lag against `end_offsets`.
pub fn progress_of(p: &Value, topic: &str, end_offsets: &BTreeMap<i32, i64>) -> Option<BatchProgress> {
    let batch_id = p.get("batchId")?.as_i64()?;
    let sources = p.get("sources").and_then(Value::as_array).cloned().unwrap_or_default();
    // A rate is a number, or absent when Spark had none (NaN); the sources' rates add up.
    let rate = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(s)) => s.parse::<f64>().ok(),
        Some(v) => v.as_f64(),
        None => None,
    };
    let num = |k: &str| {
        rate(p, k).unwrap_or_else(|| sources.iter().filter_map(|s| rate(s, k)).filter(|r| r.is_finite()).sum())
    };
    let input_rows = p
        .get("numInputRows")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| sources.iter().filter_map(|s| s.get("numInputRows")?.as_i64()).sum());
    // The Kafka source's endOffset: {"topic": {"0": 12, ...}}, as an object or a JSON string.
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for source in &sources {
        let end = match source.get("endOffset") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => Value::Null,
        };
        if let Some(parts) = end.get(topic).and_then(Value::as_object) {
            for (k, v) in parts {
                if let (Ok(partition), Some(offset)) = (k.parse::<i32>(), v.as_i64()) {
                    offsets.insert(partition, offset);
                }
            }
        }
    }
    let partitions: Vec<PartitionOffset> = offsets
        .into_iter()
        .map(|(partition, offset)| {
            let end_offset = end_offsets.get(&partition).copied();
            PartitionOffset { partition, offset, end_offset, lag: end_offset.map(|e| (e - offset).max(0)) }
        })
        .collect();
    let lag = (!partitions.is_empty() && partitions.iter().all(|p| p.lag.is_some()))
        .then(|| partitions.iter().filter_map(|p| p.lag).sum());
    Some(BatchProgress {
        batch_id,
        timestamp: p.get("timestamp").and_then(Value::as_str).map(String::from),
        input_rows,
        input_rows_per_second: num("inputRowsPerSecond"),
        processed_rows_per_second: num("processedRowsPerSecond"),
        duration_ms: p.pointer("/durationMs/triggerExecution").and_then(Value::as_i64).unwrap_or(0),
        partitions,
        lag,
    })
}

fn exception_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .take_while(|l| {
            !l.starts_with("JVM stacktrace")
                && !l.starts_with("=== Streaming Query ===")
                && !l.starts_with("Driver stacktrace")
        })
        // JVM frames say where, not what.
        .filter(|l| !l.is_empty() && !l.starts_with("at ") && !l.starts_with("..."))
        .take(6)
        .map(|l| l.chars().take(1000).collect())
        .collect()
}

/// The state of a query handle; `end_offsets` for the lag of its latest batch.
pub(crate) async fn query_status(query: &StreamingQuery, end: Option<(&str, &BTreeMap<i32, i64>)>) -> QueryStatus {
    let name = query.name().unwrap_or_default();
    let mut out = QueryStatus {
        name,
        id: Some(query.id()),
        run_id: Some(query.run_id()),
        state: QueryState::Lost,
        message: None,
        exception: Vec::new(),
        last_batch: None,
    };
    let q = query.clone();
    let status = match guarded("reading query status", async move { q.status().await }).await {
        Ok(s) => s,
        Err(e) => {
            out.exception = vec![format!("the Connect server does not know this run any more: {e}")];
            return out;
        }
    };
    // The message of a terminated query repeats the exception with its stack: first line only.
    out.message =
        status.status_message.lines().next().map(|m| m.chars().take(300).collect()).filter(|m: &String| !m.is_empty());
    out.state = if status.is_active { QueryState::Running } else { QueryState::Stopped };
    // last_progress() is the newest progress; it panics (caught) before the first batch.
    let q = query.clone();
    if let Ok(p) = guarded("reading query progress", async move { q.last_progress().await }).await {
        tracing::debug!(query = %out.name, "last progress: {p}");
        let empty = BTreeMap::new();
        let (topic, ends) = end.unwrap_or(("", &empty));
        out.last_batch = progress_of(&p, topic, ends);
    }
    if !status.is_active {
        let q = query.clone();
        if let Ok(text) = guarded("reading the query's exception", async move { q.exception().await }).await {
            if text != "No exception captured" {
                out.state = QueryState::Failed;
                out.exception = exception_lines(&text);
            }
        }
    }
    out
}

/// A handle on a recorded query run, active or not.
fn handle(spark: &SparkSession, name: &str, id: &str, run_id: &str) -> StreamingQuery {
    StreamingQuery::new(
        Box::new(spark.clone()),
        WriteStreamOperationStartResult {
            query_id: Some(StreamingQueryInstanceId { id: id.to_string(), run_id: run_id.to_string() }),
            name: name.to_string(),
        },
    )
}

/// The job's status, from any process (a new session and Kafka client each call: see
/// [`StatusClient`] to poll).
pub async fn status(config: &Config) -> JobStatus {
    StatusClient::new().status(config).await
}

pub(super) async fn status_with(client: &mut StatusClient, config: &Config) -> JobStatus {
    let job = &config.job;
    let record = JobRecord::load(config);
    let (record, mut error) = match record {
        Ok(r) => (r, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (ends, kafka_error) = match end_offsets(config, &mut client.kafka).await {
        Ok(e) => (e, None),
        Err(e) => (BTreeMap::new(), Some(format!("cannot read the end offsets of {}: {e}", config.kafka.topic))),
    };
    let mut out = JobStatus {
        format: 1,
        state: JobState::NotSubmitted,
        exit_code: 0,
        checked_at: Utc::now(),
        desired: record.as_ref().map(|r| r.desired),
        topic: config.kafka.topic.clone(),
        end_offsets: ends.clone(),
        error: kafka_error,
        queries: Vec::new(),
    };
    let names = [job.query_name.as_str(), job.dead_letter_query_name.as_str()];
    let (spark, active) = match client.active(config).await {
        Ok(v) => v,
        Err(e) => {
            error = Some(e.to_string());
            out.error = error;
            out.state = match out.desired {
                Some(DesiredState::Running) => JobState::Unreachable,
                Some(DesiredState::Stopped) => JobState::Stopped,
                None => JobState::Unreachable,
            };
            out.exit_code = out.state.exit_code();
            return out;
        }
    };
    for name in names {
        let end = Some((config.kafka.topic.as_str(), &ends));
        let q = if let Some(q) = active.iter().find(|q| q.name().as_deref() == Some(name)) {
            query_status(q, end).await
        } else if let Some(r) = record.as_ref().and_then(|r| r.queries.iter().find(|q| q.name == name)) {
            query_status(&handle(&spark, name, &r.id, &r.run_id), end).await
        } else {
            QueryStatus {
                name: name.to_string(),
                id: None,
                run_id: None,
                state: QueryState::NotStarted,
                message: None,
                exception: Vec::new(),
                last_batch: None,
            }
        };
        out.queries.push(q);
    }
    let running = out.queries.iter().filter(|q| q.state == QueryState::Running).count();
    out.state = match (running, out.desired) {
        (n, _) if n == out.queries.len() => JobState::Running,
        (0, Some(DesiredState::Stopped)) => JobState::Stopped,
        (0, None) if out.queries.iter().all(|q| q.state == QueryState::NotStarted) => JobState::NotSubmitted,
        (0, _) => JobState::Failed,
        _ => JobState::Degraded,
    };
    if error.is_some() {
        out.error = error;
    }
    out.exit_code = out.state.exit_code();
    out
}

/// `batch 12 at ...: 500 rows, 250 in/s, 800 processed/s, 620 ms | p0=100/100, p1=98/100 | lag 2`
pub fn progress_line(b: &BatchProgress) -> String {
    let offsets = if b.partitions.is_empty() {
        "no offsets".to_string()
    } else {
        b.partitions
            .iter()
            .map(|p| match p.end_offset {
                Some(end) => format!("p{}={}/{end}", p.partition, p.offset),
                None => format!("p{}={}", p.partition, p.offset),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lag = b.lag.map(|l| format!(" | lag {l}")).unwrap_or_default();
    format!(
        "batch {}{}: {} rows, {:.0} in/s, {:.0} processed/s, {} ms | {offsets}{lag}",
        b.batch_id,
        b.timestamp.as_deref().map(|t| format!(" at {t}")).unwrap_or_default(),
        b.input_rows,
        b.input_rows_per_second,
        b.processed_rows_per_second,
        b.duration_ms
    )
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = serde_json::to_value(self.state).ok().and_then(|v| v.as_str().map(str::to_uppercase));
        writeln!(f, "job on {}: {}", self.topic, state.unwrap_or_default())?;
        if let Some(e) = &self.error {
            writeln!(f, "  note: {e}")?;
        }
        for q in &self.queries {
            let state = serde_json::to_value(q.state).ok().and_then(|v| v.as_str().map(str::to_uppercase));
            write!(f, "{} {}", state.unwrap_or_default(), q.name)?;
            if let (Some(id), Some(run)) = (&q.id, &q.run_id) {
                write!(f, " id={id} run={run}")?;
            }
            writeln!(f)?;
            if let Some(m) = &q.message {
                writeln!(f, "  status: {m}")?;
            }
            match &q.last_batch {
                Some(b) => writeln!(f, "  last batch: {}", progress_line(b))?,
                None if q.state == QueryState::Running => writeln!(f, "  no batch completed yet")?,
                None => {}
            }
            for line in &q.exception {
                writeln!(f, "  error: {line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Value {
        serde_json::json!({
            "batchId": 3, "timestamp": "2026-12-04T15:00:00.000Z", "numInputRows": 120,
            "inputRowsPerSecond": 60.0, "processedRowsPerSecond": 240.5,
            "durationMs": {"triggerExecution": 498},
            "sources": [{"endOffset": {"t": {"0": 40, "1": 41, "2": 39}}, "numInputRows": 120}]
        })
    }

    #[test]
    fn progress_reads_spark_json_with_lag() {
        let ends = BTreeMap::from([(0, 40), (1, 45), (2, 39)]);
        let b = progress_of(&progress(), "t", &ends).unwrap_or_else(|| panic!("no progress"));
        assert_eq!((b.batch_id, b.input_rows, b.duration_ms, b.lag), (3, 120, 498, Some(4)));
        let line = progress_line(&b);
        assert!(line.starts_with("batch 3 at 2026-12-04T15:00:00.000Z: 120 rows, 60 in/s, 240 processed/s, 498 ms"));
        assert!(line.ends_with("| p0=40/40, p1=41/45, p2=39/39 | lag 4"), "{line}");
    }

    #[test]
    fn offsets_given_as_a_json_string_are_read_too() {
        let mut p = progress();
        p["sources"][0]["endOffset"] = Value::String(r#"{"t":{"0":7}}"#.into());
        let b = progress_of(&p, "t", &BTreeMap::new()).unwrap_or_else(|| panic!("no progress"));
        assert_eq!(b.partitions, vec![PartitionOffset { partition: 0, offset: 7, end_offset: None, lag: None }]);
        assert_eq!(b.lag, None);
        assert!(progress_line(&b).ends_with("| p0=7"));
    }

    #[test]
    fn exit_codes_follow_the_documented_contract() {
        assert_eq!(JobState::Running.exit_code(), 0);
        assert_eq!(JobState::Degraded.exit_code(), 3);
        assert_eq!(JobState::Failed.exit_code(), 3);
        assert_eq!(JobState::NotSubmitted.exit_code(), 4);
    }

    #[test]
    fn exception_keeps_the_first_lines_before_the_stack_trace() {
        let text = "[STREAM_FAILED] boom\n\tat a.b(C.java:1)\nCaused by: x\n\nError Class:\nSTREAM_FAILED\n\nJVM stacktrace:\nat x";
        assert_eq!(
            exception_lines(text),
            vec!["[STREAM_FAILED] boom", "Caused by: x", "Error Class:", "STREAM_FAILED"]
        );
    }
}
