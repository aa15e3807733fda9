//! What the page shows: one snapshot, updated in place by the collectors, served as JSON.
//!
//! Each source of figures has its own [`Section`] (its data, its last error, when it was last
//! refreshed), so one service being down never hides the others. Charts are small rings of
//! points aligned on one x axis each, in the column layout uPlot draws directly.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// Points kept per chart (at one point per second or per batch: several minutes).
pub const CHART_POINTS: usize = 300;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One source's figures, or why they are missing.
#[derive(Debug, Clone, Serialize)]
pub struct Section<T> {
    pub data: Option<T>,
    pub error: Option<String>,
    /// When the collector last finished a round (ms since the epoch; 0 = never).
    pub updated_ms: i64,
}

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section { data: None, error: None, updated_ms: 0 }
    }
}

impl<T> Section<T> {
    /// A successful round: new data, no error.
    pub fn set(&mut self, data: T) {
        self.data = Some(data);
        self.error = None;
        self.updated_ms = now_ms();
    }

    /// A failed round: the last data stays visible, marked with the error.
    pub fn fail(&mut self, error: impl Into<String>) {
        self.error = Some(error.into());
        self.updated_ms = now_ms();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    pub healthy: bool,
    pub pid: Option<i32>,
    pub rss_mib: u64,
    pub ports: Vec<u16>,
    pub detail: String,
    pub ui: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicView {
    pub name: String,
    pub partitions: usize,
    /// Sum of the partitions' end offsets (high watermarks); `None` when not fetched.
    pub end_offset: Option<i64>,
    /// Records currently in the topic: sum of (high - low).
    pub records: Option<i64>,
    /// Bytes of the topic's segment files, when the broker's log folder is local.
    pub bytes: Option<u64>,
    pub per_partition: Vec<PartitionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct KafkaView {
    /// The pipeline's topic and dead-letter topic first, then the other topics.
    pub topics: Vec<TopicView>,
    /// Messages per second into the pipeline's topic over the last round.
    pub messages_per_sec: f64,
    /// Consumer lag per engine: sum over partitions of end offset - consumed offset.
    pub lag: BTreeMap<String, Option<i64>>,
    /// Bytes per second into the pipeline's topic (from its log size), when known.
    pub bytes_per_sec: Option<f64>,
    /// The broker's log folder the sizes are read from; `None` when it is not on this machine.
    pub log_dir: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SparkQueryView {
    pub name: String,
    pub id: String,
    pub run_id: String,
    pub active: bool,
    pub batch_id: Option<i64>,
    pub input_rows_per_sec: f64,
    pub processed_rows_per_sec: f64,
    pub batch_duration_ms: Option<i64>,
    pub num_input_rows: Option<i64>,
    /// The time of the latest progress, as Spark reports it.
    pub timestamp: Option<String>,
    /// Offsets the query has read up to, per partition of its source topic (latest progress).
    pub end_offsets: BTreeMap<i32, i64>,
    /// The latest batch committed in the query's checkpoint and its end offsets, when the
    /// checkpoint folder is readable from here (the Connect server writes it on this machine).
    pub checkpoint_batch: Option<i64>,
    pub checkpoint_offsets: BTreeMap<i32, i64>,
    pub status: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SparkView {
    pub queries: Vec<SparkQueryView>,
    pub links: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyView {
    /// Samples (rows) in the last minute and their percentiles, in milliseconds.
    pub samples: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CassandraView {
    pub table: String,
    /// Cassandra's own partition estimate (system.size_estimates), refreshed by Cassandra
    /// every few minutes.
    pub estimated_rows: Option<i64>,
    /// The estimate split by the engines seen in recent rows.
    pub estimated_by_engine: BTreeMap<String, i64>,
    /// The last exact count, by engine, when one was asked for.
    pub exact: Option<ExactCount>,
    pub exact_running: bool,
    /// Writes to the table on this node since Cassandra started
    /// (`system_views.local_write_latency`, one per row written).
    pub writes_total: Option<i64>,
    /// Writes per second over the last round, and split by engine in proportion to the
    /// engines of the rows the latency probe measured in the last minute.
    pub writes_per_sec: Option<f64>,
    pub writes_per_sec_by_engine: BTreeMap<String, f64>,
    /// Why the write counter could not be read, if it could not.
    pub writes_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExactCount {
    pub by_engine: BTreeMap<String, i64>,
    pub total: i64,
    pub at_ms: i64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub reason: String,
    pub engine: String,
    pub source_offset: String,
    pub key: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DlqView {
    pub topic: String,
    /// Records in the dead-letter topic (from its offsets).
    pub count: i64,
    /// Of the records read so far by the dashboard: count per reason.
    pub by_reason: BTreeMap<String, u64>,
    pub read: u64,
    /// The newest 50, newest first.
    pub latest: VecDeque<DeadLetter>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectView {
    pub subject: String,
    pub versions: Vec<i64>,
    pub compatibility: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistryView {
    pub subjects_total: usize,
    /// The pipeline's subject first, then others (at most [`crate::registry::MAX_SUBJECTS`]).
    pub subjects: Vec<SubjectView>,
    pub global_compatibility: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditView {
    pub audited: i64,
    pub audited_is_estimate: bool,
    pub outbox_pending: i64,
    pub rejected: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AirflowView {
    /// Airflow's UI.
    pub ui: String,
    pub dags: Vec<DagView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DagView {
    pub dag_id: String,
    pub paused: bool,
    pub url: String,
    /// The latest runs, newest first.
    pub runs: Vec<DagRunView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DagRunView {
    pub run_id: String,
    /// queued, running, success, failed (Airflow's words).
    pub state: String,
    pub run_type: String,
    pub queued_at: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// The run in Airflow's UI.
    pub url: String,
}

/// One chart: an x axis (seconds since the epoch) and one or more series aligned on it.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub labels: Vec<String>,
    pub x: VecDeque<f64>,
    pub ys: Vec<VecDeque<Option<f64>>>,
}

impl Chart {
    pub fn new(labels: &[&str]) -> Chart {
        Chart {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            x: VecDeque::new(),
            ys: labels.iter().map(|_| VecDeque::new()).collect(),
        }
    }

    /// Appends a point (one value per series), dropping the oldest beyond [`CHART_POINTS`].
    pub fn push(&mut self, x_ms: i64, values: &[Option<f64>]) {
        self.x.push_back(x_ms as f64 / 1000.0);
        for (i, y) in self.ys.iter_mut().enumerate() {
            y.push_back(values.get(i).copied().flatten());
        }
        if self.x.len() > CHART_POINTS {
            self.x.pop_front();
            for y in &mut self.ys {
                y.pop_front();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Charts {
    pub messages: Chart,
    pub lag: Chart,
    pub spark_rows: Chart,
    pub spark_duration: Chart,
    pub latency: Chart,
    pub bytes: Chart,
    pub cassandra_writes: Chart,
}

impl Default for Charts {
    fn default() -> Self {
        Charts {
            messages: Chart::new(&["messages/s"]),
            lag: Chart::new(&["spark", "datafusion"]),
            spark_rows: Chart::new(&["input rows/s", "processed rows/s"]),
            spark_duration: Chart::new(&["batch ms", "dead-letter batch ms"]),
            latency: Chart::new(&["p50 ms", "p99 ms"]),
            bytes: Chart::new(&["bytes/s"]),
            cassandra_writes: Chart::new(&["writes/s", "spark", "datafusion"]),
        }
    }
}

/// Everything the page and the API serve.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub topic: String,
    pub query_name: String,
    pub services: Section<Vec<ServiceView>>,
    pub kafka: Section<KafkaView>,
    pub spark: Section<SparkView>,
    pub latency: Section<LatencyView>,
    pub cassandra: Section<CassandraView>,
    pub dlq: Section<DlqView>,
    pub registry: Section<RegistryView>,
    pub audit: Section<AuditView>,
    /// Whether Airflow is part of this cluster (`airflow.enabled`); its section is empty if not.
    pub airflow_enabled: bool,
    pub airflow: Section<AirflowView>,
    pub charts: Charts,
}

impl Snapshot {
    /// True once the first figures arrived (the page's `ready` hook).
    pub fn ready(&self) -> bool {
        self.services.data.is_some() && self.kafka.data.is_some()
    }
}

/// The shared snapshot.
pub type Shared = Arc<RwLock<Snapshot>>;

/// Applies `f` to the snapshot; a poisoned lock (a collector panicked) is recovered.
pub fn update(shared: &Shared, f: impl FnOnce(&mut Snapshot)) {
    let mut guard = shared.write().unwrap_or_else(|e| e.into_inner());
    f(&mut guard);
}

/// Reads from the snapshot.
pub fn read<T>(shared: &Shared, f: impl FnOnce(&Snapshot) -> T) -> T {
    let guard = shared.read().unwrap_or_else(|e| e.into_inner());
    f(&guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_keep_a_bounded_window_aligned() {
        let mut c = Chart::new(&["a", "b"]);
        for i in 0..(CHART_POINTS as i64 + 10) {
            c.push(i * 1000, &[Some(i as f64), None]);
        }
        assert_eq!(c.len(), CHART_POINTS);
        assert_eq!(c.ys[0].len(), CHART_POINTS);
        assert_eq!(c.ys[1].len(), CHART_POINTS);
        assert_eq!(c.x.front().copied(), Some(10.0));
        assert_eq!(c.ys[0].front().copied().flatten(), Some(10.0));
    }

    #[test]
    fn a_failed_round_keeps_the_last_data() {
        let mut s: Section<i32> = Section::default();
        s.set(3);
        s.fail("down");
        assert_eq!(s.data, Some(3));
        assert_eq!(s.error.as_deref(), Some("down"));
    }
}
