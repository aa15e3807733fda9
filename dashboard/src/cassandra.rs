//! Cassandra: end-to-end latency, row estimates, exact counts on request. One session.
//!
//! Latency is measured on the newest records of the topic (their keys come from the Kafka
//! collector): `SELECT ... WHERE id IN (...)` is a primary-key lookup, so the probe costs a few
//! point reads every 2 s however large the table. Latency = WRITETIME(engine) - produced_at.
//!
//! The write rate is the delta of the table's write counter in Cassandra's virtual table
//! `system_views.local_write_latency` (Cassandra 4.1+, no JMX): one read of a node-local
//! in-memory row per round. The counter does not know engines: the split by engine follows the
//! engines of the rows the latency probe measured in the last minute.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use pipeline_core::Config;
use scylla::client::session::Session;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::kafka::KeySeen;
use crate::state::{self, CassandraView, ExactCount, LatencyView, Shared};

/// Keys looked up per round, and how long a key is retried before it is given up (long enough
/// to measure a job that is minutes behind).
const LOOKUPS_PER_ROUND: usize = 100;
const KEY_PATIENCE: Duration = Duration::from_secs(300);
const MAX_PENDING: usize = 2000;
const WINDOW_MS: i64 = 60_000;
/// Exact counts scan the table: at most one per this period.
pub const EXACT_COUNT_MIN_INTERVAL: Duration = Duration::from_secs(30);
const ESTIMATE_INTERVAL: Duration = Duration::from_secs(30);

/// One measured row: when it was written, its latency and the engine that wrote it.
#[derive(Debug, Clone)]
struct Sample {
    written_ms: i64,
    latency_ms: f64,
    engine: String,
}

/// Percentile `q` (0..=1) of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

struct Probe {
    config: Config,
    session: Option<Session>,
    pending: VecDeque<(Uuid, Instant)>,
    samples: VecDeque<Sample>,
    estimate_at: Option<Instant>,
    estimate: Option<i64>,
    previous_writes: Option<(Instant, i64)>,
}

/// Runs the Cassandra collector until `shutdown`. `count_requests` asks for an exact count.
pub async fn run(
    config: Config,
    shared: Shared,
    keys: Receiver<KeySeen>,
    count_requests: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let table = format!("{}.{}", config.cassandra.keyspace, config.cassandra.table);
    state::update(&shared, |s| s.cassandra.set(CassandraView { table: table.clone(), ..Default::default() }));
    let mut probe = Probe {
        config,
        session: None,
        pending: VecDeque::new(),
        samples: VecDeque::new(),
        estimate_at: None,
        estimate: None,
        previous_writes: None,
    };
    let mut last_exact: Option<Instant> = None;
    loop {
        while let Ok((key, _)) = keys.try_recv() {
            if let Ok(id) = Uuid::parse_str(&key) {
                if probe.pending.len() >= MAX_PENDING {
                    probe.pending.pop_front();
                }
                probe.pending.push_back((id, Instant::now()));
            }
        }
        if let Err(e) = probe.round(&shared).await {
            probe.session = None;
            state::update(&shared, |s| {
                s.latency.fail(e.clone());
                s.cassandra.fail(e);
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = count_requests.notified() => {
                if last_exact.is_none_or(|t| t.elapsed() >= EXACT_COUNT_MIN_INTERVAL) {
                    last_exact = Some(Instant::now());
                    probe.exact_count(&shared).await;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

impl Probe {
    async fn session(&mut self) -> Result<&Session, String> {
        if self.session.is_none() {
            let c = &self.config.cassandra;
            let session = pipeline_core::clients::cassandra::session(c).await.map_err(|e| e.to_string())?;
            self.session = Some(session);
        }
        self.session.as_ref().ok_or_else(|| "no Cassandra session".to_string())
    }

    async fn round(&mut self, shared: &Shared) -> Result<(), String> {
        let now = state::now_ms();
        self.lookup().await?;
        self.samples.retain(|s| s.written_ms >= now - WINDOW_MS);
        let mut latencies: Vec<f64> = self.samples.iter().map(|s| s.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let view = LatencyView {
            samples: latencies.len(),
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied(),
        };
        if self.estimate_at.is_none_or(|t| t.elapsed() >= ESTIMATE_INTERVAL) {
            self.estimate = self.estimate_rows().await?;
            self.estimate_at = Some(Instant::now());
        }
        let mut engines: BTreeMap<String, usize> = BTreeMap::new();
        for s in &self.samples {
            *engines.entry(s.engine.clone()).or_default() += 1;
        }
        let estimate = self.estimate;
        let (writes_total, writes_error) = match self.write_count().await {
            Ok(n) => (n, None),
            Err(e) => (None, Some(e)),
        };
        let at = Instant::now();
        let writes_per_sec = match (self.previous_writes, writes_total) {
            // A restarted Cassandra starts counting from zero again.
            (Some((then, prev)), Some(n)) if at > then && n >= prev => {
                Some((n - prev) as f64 / (at - then).as_secs_f64())
            }
            _ => None,
        };
        self.previous_writes = writes_total.map(|n| (at, n));
        let by_engine = split(writes_per_sec, &engines);
        state::update(shared, |s| {
            s.charts.latency.push(now, &[view.p50_ms, view.p99_ms]);
            if let Some(rate) = writes_per_sec {
                // No split without measured rows (a gap, not a zero).
                let engine = |e: &str| (!by_engine.is_empty()).then(|| by_engine.get(e).copied().unwrap_or(0.0));
                s.charts.cassandra_writes.push(now, &[Some(rate), engine("spark"), engine("datafusion")]);
            }
            s.latency.set(view);
            let mut c = s.cassandra.data.clone().unwrap_or_default();
            c.estimated_rows = estimate;
            c.writes_total = writes_total;
            c.writes_per_sec = writes_per_sec;
            c.writes_per_sec_by_engine = by_engine;
            c.writes_error = writes_error;
            if let (Some(total), false) = (estimate, engines.is_empty()) {
                let seen: usize = engines.values().sum();
                c.estimated_by_engine = engines
                    .iter()
                    .map(|(e, n)| (e.clone(), (total as f64 * *n as f64 / seen as f64).round() as i64))
                    .collect();
            }
            s.cassandra.set(c);
        });
        Ok(())
    }

    /// Looks up the oldest pending keys; found rows become samples, others wait (a while).
    async fn lookup(&mut self) -> Result<(), String> {
        let n = self.pending.len().min(LOOKUPS_PER_ROUND);
        if n == 0 {
            // Connect anyway, so that a Cassandra outage shows even when no data flows.
            self.session().await?;
            return Ok(());
        }
        let batch: Vec<(Uuid, Instant)> = self.pending.drain(..n).collect();
        let ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        let c = &self.config.cassandra;
        let cql =
            format!("SELECT id, produced_at, WRITETIME(engine), engine FROM {}.{} WHERE id IN ?", c.keyspace, c.table);
        let session = self.session().await?;
        let result = session.query_unpaged(cql, (&ids,)).await.map_err(|e| format!("latency probe: {e}"));
        let rows = match result.and_then(|r| r.into_rows_result().map_err(|e| e.to_string())) {
            Ok(rows) => rows,
            Err(e) => {
                // Keep the keys for the next round.
                for item in batch.into_iter().rev() {
                    self.pending.push_front(item);
                }
                return Err(e);
            }
        };
        type Row = (Uuid, Option<DateTime<Utc>>, Option<i64>, Option<String>);
        let mut found = std::collections::HashSet::new();
        for row in rows.rows::<Row>().map_err(|e| e.to_string())? {
            let (id, produced, written_us, engine) = row.map_err(|e| e.to_string())?;
            found.insert(id);
            if let (Some(produced), Some(written_us)) = (produced, written_us) {
                let written_ms = written_us / 1000;
                self.samples.push_back(Sample {
                    written_ms,
                    latency_ms: (written_us as f64 / 1000.0 - produced.timestamp_millis() as f64).max(0.0),
                    engine: engine.unwrap_or_default(),
                });
            }
        }
        for (id, seen) in batch {
            if !found.contains(&id) && seen.elapsed() < KEY_PATIENCE {
                self.pending.push_back((id, seen));
            }
        }
        Ok(())
    }

    /// The table's write counter on this node (`None`: no write since Cassandra started).
    async fn write_count(&mut self) -> Result<Option<i64>, String> {
        let (ks, table) = (self.config.cassandra.keyspace.clone(), self.config.cassandra.table.clone());
        let session = self.session().await?;
        let rows = session
            .query_unpaged(
                "SELECT count FROM system_views.local_write_latency WHERE keyspace_name = ? AND table_name = ?",
                (ks, table),
            )
            .await
            .map_err(|e| format!("write counter (system_views.local_write_latency): {e}"))?
            .into_rows_result()
            .map_err(|e| e.to_string())?;
        let first = rows.maybe_first_row::<(Option<i64>,)>().map_err(|e| e.to_string())?;
        Ok(first.and_then(|(n,)| n))
    }

    async fn estimate_rows(&mut self) -> Result<Option<i64>, String> {
        let (ks, table) = (self.config.cassandra.keyspace.clone(), self.config.cassandra.table.clone());
        let session = self.session().await?;
        let rows = session
            .query_unpaged(
                "SELECT partitions_count FROM system.size_estimates WHERE keyspace_name = ? AND table_name = ?",
                (ks, table),
            )
            .await
            .map_err(|e| format!("size estimate: {e}"))?
            .into_rows_result()
            .map_err(|e| e.to_string())?;
        let mut total = None;
        for row in rows.rows::<(Option<i64>,)>().map_err(|e| e.to_string())? {
            let (n,) = row.map_err(|e| e.to_string())?;
            total = Some(total.unwrap_or(0) + n.unwrap_or(0));
        }
        Ok(total)
    }

    /// Counts every row by engine (a full scan, paged); at most one per 30 s.
    async fn exact_count(&mut self, shared: &Shared) {
        state::update(shared, |s| {
            if let Some(c) = s.cassandra.data.as_mut() {
                c.exact_running = true;
            }
        });
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(300), self.scan()).await;
        let outcome = match result {
            Ok(r) => r,
            Err(_) => Err("the exact count took longer than 300 s".to_string()),
        };
        state::update(shared, |s| {
            let mut c = s.cassandra.data.clone().unwrap_or_default();
            c.exact_running = false;
            match outcome {
                Ok(by_engine) => {
                    let total = by_engine.values().sum();
                    c.exact = Some(ExactCount {
                        by_engine,
                        total,
                        at_ms: state::now_ms(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                    s.cassandra.set(c);
                }
                Err(e) => {
                    s.cassandra.data = Some(c);
                    s.cassandra.fail(e);
                }
            }
        });
    }

    async fn scan(&mut self) -> Result<BTreeMap<String, i64>, String> {
        let c = &self.config.cassandra;
        let cql = format!("SELECT engine FROM {}.{}", c.keyspace, c.table);
        let session = self.session().await?;
        let mut rows = session
            .query_iter(cql, &[])
            .await
            .map_err(|e| format!("exact count: {e}"))?
            .rows_stream::<(Option<String>,)>()
            .map_err(|e| e.to_string())?;
        let mut by_engine = BTreeMap::new();
        while let Some(row) = rows.next().await {
            let (engine,) = row.map_err(|e| format!("exact count: {e}"))?;
            *by_engine.entry(engine.unwrap_or_else(|| "(none)".into())).or_insert(0) += 1;
        }
        Ok(by_engine)
    }
}

/// `rate` split in proportion to `engines` (rows measured per engine); empty when either is unknown.
pub fn split(rate: Option<f64>, engines: &BTreeMap<String, usize>) -> BTreeMap<String, f64> {
    let seen: usize = engines.values().sum();
    match rate {
        Some(rate) if seen > 0 => engines.iter().map(|(e, n)| (e.clone(), rate * *n as f64 / seen as f64)).collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_rate_splits_by_the_engines_measured() {
        let engines = BTreeMap::from([("spark".to_string(), 3), ("datafusion".to_string(), 1)]);
        let by = split(Some(100.0), &engines);
        assert_eq!(by.get("spark"), Some(&75.0));
        assert_eq!(by.get("datafusion"), Some(&25.0));
        assert!(split(None, &engines).is_empty());
        assert!(split(Some(5.0), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
