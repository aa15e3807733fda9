//! The producer loop: recover the outbox, then fetch -> normalise -> audit -> publish -> mark.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use pipeline_core::config::SourceKind;
use pipeline_core::model::event_avro_schema;
use pipeline_core::registry::{frame_with, RegistryClient, RegistryError};
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::audit::{AuditError, AuditRecord, AuditStore, OutboxRow};
use crate::metrics;
use crate::normalize::normalize;
use crate::publish::{PublishError, Publisher};
use crate::source::randomuser::RandomUserSource;
use crate::source::synthetic::SyntheticSource;
use crate::source::{self, Source, SourceError};

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub source: SourceKind,
    /// Users to fetch; `None` only in interval mode (until stopped).
    pub count: Option<u64>,
    /// Upper bound on records per second.
    pub rate: Option<f64>,
    /// Users per fetch and per audit/publish batch.
    pub batch: usize,
    /// Interval mode: one batch per period until stopped (or until `count`).
    pub interval: Option<Duration>,
    /// Seed of the synthetic source.
    pub seed: u64,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub fetched: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub audited: u64,
    pub published: u64,
    pub recovered: u64,
    pub fetch_failures: u64,
    pub publish_failures: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// True when nothing failed (rejected input is handled, not a failure).
    pub fn ok(&self) -> bool {
        self.fetch_failures == 0 && self.publish_failures == 0
    }

    pub fn records_per_sec(&self) -> f64 {
        self.published as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Options(String),
    #[error("{0}")]
    Task(String),
}

/// Registers the event schema (idempotent) and sets the subject's compatibility; returns the id.
pub async fn register_event_schema(config: &Config) -> Result<u32, ProducerError> {
    let registry = RegistryClient::from_config(&config.registry)?;
    let id = registry.register(&config.registry.subject, &event_avro_schema()).await?;
    registry.set_compatibility(&config.registry.subject, config.registry.compatibility.as_str()).await?;
    Ok(id)
}

/// Runs the producer until the count is reached, or until `shutdown` in interval mode.
/// The progress bar (if any) advances by published records.
///
/// Three stages overlap, one batch each: a task fetches, normalises and encodes batch k+2 while
/// batch k+1 is audited here and batch k is published (and marked) by another task. Bounded
/// hand-offs keep the order and the memory use fixed. On shutdown, batches already fetched are
/// still audited and published.
pub async fn run(
    config: &Config,
    opts: ProduceOptions,
    shutdown: CancellationToken,
    progress: Option<ProgressBar>,
) -> Result<Summary, ProducerError> {
    if opts.count.is_none() && opts.interval.is_none() {
        return Err(ProducerError::Options("give a count, or interval mode".into()));
    }
    if opts.batch == 0 {
        return Err(ProducerError::Options("the batch size must be at least 1".into()));
    }
    let started = Instant::now();
    // One PostgreSQL connection is one server process: each batch is audited in two halves
    // on two connections at once, and marks go through a third, so the server uses every
    // core (measured: 28-33k -> 34-36k records/s on 2 cores).
    let store = [AuditStore::connect(&config.postgres).await?, AuditStore::connect(&config.postgres).await?];
    let marks = Arc::new(AuditStore::connect(&config.postgres).await?);
    let schema_id = register_event_schema(config).await?;
    let publisher = Arc::new(Publisher::new(&config.kafka, &config.producer.kafka)?);
    tracing::info!(schema_id, subject = %config.registry.subject, topic = publisher.topic(), "producer ready");

    let mut summary = Summary { recovered: drain_outbox(&marks, &publisher, opts.batch).await?, ..Summary::default() };
    if summary.recovered > 0 {
        tracing::info!(recovered = summary.recovered, "published the outbox backlog of an earlier run");
    }

    let source = build_source(config, opts.source, opts.seed)?;
    let (batches, mut prepared) = mpsc::channel(1);
    // Cancelled on shutdown (the batches already fetched still drain) and on any failure
    // here, so the fetch task never outlives the run.
    let stop_fetching = shutdown.child_token();
    let fetcher = tokio::spawn(fetch_loop(source, opts, schema_id, stop_fetching.clone(), batches));
    let mut in_flight: Option<JoinHandle<Result<usize, ProducerError>>> = None;
    let mut failure = None;
    while let Some(batch) = prepared.recv().await {
        let audited = match batch {
            Ok(batch) => audit(&store, publisher.topic(), batch, &mut summary).await,
            Err(e) => Err(e),
        };
        let rows = match audited {
            Ok(rows) => rows,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Err(e) = finish(in_flight.take(), &mut summary, progress.as_ref()).await {
            failure = Some(e);
            break;
        }
        let (marks, publisher) = (marks.clone(), publisher.clone());
        in_flight = Some(tokio::spawn(async move { publish_rows(&marks, &publisher, &rows).await }));
    }
    stop_fetching.cancel();
    drop(prepared);
    // The first error wins; the batch in flight and the fetch task are waited for regardless.
    if let Err(e) = finish(in_flight.take(), &mut summary, progress.as_ref()).await {
        failure.get_or_insert(e);
    }
    match fetcher.await {
        Ok(failures) => summary.fetch_failures += failures,
        Err(e) => {
            failure.get_or_insert(ProducerError::Task(format!("the fetch task failed: {e}")));
        }
    }
    // Waits up to 10 s for the last deliveries, then drops the producer (which joins its polling
    // thread): on a blocking thread, not the runtime.
    let _ = tokio::task::spawn_blocking(move || {
        let flushed = publisher.flush(Duration::from_secs(10));
        drop(publisher);
        flushed
    })
    .await;
    summary.elapsed = started.elapsed();
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// One fetch, normalised and encoded, ready to audit.
struct Prepared {
    source: &'static str,
    fetched: usize,
    fetched_at: DateTime<Utc>,
    records: Vec<AuditRecord>,
    rejected: Vec<(String, String)>,
    /// Ids repeated within the fetch (dropped here).
    duplicates: usize,
}

/// The first stage: fetches batches (paced by the rate or the interval), prepares them off the
/// async threads and hands them over; stops at the count, on shutdown, or on a fetch error
/// outside interval mode (sent on as the last item). Returns the failed fetches of interval mode.
async fn fetch_loop(
    mut source: Source,
    opts: ProduceOptions,
    schema_id: u32,
    shutdown: CancellationToken,
    batches: mpsc::Sender<Result<Prepared, ProducerError>>,
) -> u64 {
    let pacing_start = Instant::now();
    let mut fetched_total: u64 = 0;
    let mut failures = 0;
    loop {
        let want = match opts.count {
            Some(n) => n.saturating_sub(fetched_total).min(opts.batch as u64) as usize,
            None => opts.batch,
        };
        if want == 0 || shutdown.is_cancelled() {
            break;
        }
        let tick = Instant::now();
        let fetched = tokio::select! {
            r = source.fetch(want) => r,
            _ = shutdown.cancelled() => break,
        };
        metrics::stage_latency("fetch", tick.elapsed());
        match fetched {
            Ok(fetched) => {
                // Rejected records count toward the requested number: they were fetched.
                fetched_total += (fetched.users.len() + fetched.rejected.len()).max(1) as u64;
                let name = source.name();
                let tick = Instant::now();
                let batch = tokio::task::spawn_blocking(move || prepare(name, fetched, schema_id))
                    .await
                    .map_err(|e| ProducerError::Task(format!("preparing a batch failed: {e}")));
                metrics::stage_latency("prepare", tick.elapsed());
                let failed = batch.is_err();
                if batches.send(batch).await.is_err() || failed {
                    break;
                }
            }
            Err(e) if opts.interval.is_some() => {
                // Interval mode keeps going: the next tick tries again.
                tracing::error!("fetch failed: {e}");
                metrics::fetch_failed();
                failures += 1;
            }
            Err(e) => {
                let _ = batches.send(Err(e.into())).await;
                break;
            }
        }
        let pause = match (opts.interval, opts.rate) {
            (Some(period), _) => period.saturating_sub(tick.elapsed()),
            (None, Some(rate)) if rate > 0.0 => {
                let due = Duration::from_secs_f64(fetched_total as f64 / rate);
                due.saturating_sub(pacing_start.elapsed())
            }
            _ => Duration::ZERO,
        };
        if !pause.is_zero() && !sleep_or_stop(pause, &shutdown).await {
            break;
        }
    }
    failures
}

/// Normalises and encodes one fetch (CPU only): events framed for Kafka, payloads as JSON text.
fn prepare(source: &'static str, fetched: source::Fetched, schema_id: u32) -> Prepared {
    let produced_at = Utc::now();
    let fetched_count = fetched.users.len();
    let mut rejected: Vec<(String, String)> = fetched.rejected.into_iter().map(|r| (r.reason, r.payload)).collect();
    let mut records = Vec::with_capacity(fetched_count);
    let mut seen = HashSet::with_capacity(fetched_count);
    let mut duplicates = 0;
    for user in fetched.users {
        match normalize(user, source, fetched.fetched_at, produced_at) {
            // The same id twice in one fetch: the first copy is audited (and the halves audited
            // on two connections never race for one id).
            Ok(n) if !seen.insert(n.event.id) => duplicates += 1,
            Ok(n) => records.push(AuditRecord {
                user_id: n.event.id,
                source,
                payload: n.payload.to_string(),
                kafka_value: frame_with(schema_id, 400, |out| n.event.encode_avro(out)),
                schema_id,
                fetched_at: fetched.fetched_at,
            }),
            Err(refused) => rejected.push((refused.reason, refused.payload.to_string())),
        }
    }
    Prepared { source, fetched: fetched_count, fetched_at: fetched.fetched_at, records, rejected, duplicates }
}

/// Audits one prepared batch (rejections too), in two halves on two connections; returns the
/// outbox rows to publish, in batch order. If a half fails, the other may be audited: its
/// rows wait in the outbox and are published on the next start.
async fn audit(
    store: &[AuditStore; 2],
    topic: &str,
    batch: Prepared,
    summary: &mut Summary,
) -> Result<Vec<OutboxRow>, ProducerError> {
    let Prepared { source, fetched, fetched_at, records, rejected, duplicates: repeated } = batch;
    summary.fetched += fetched as u64;
    summary.rejected += rejected.len() as u64;
    metrics::fetched(source, fetched);
    metrics::rejected(source, rejected.len());
    for (reason, _) in rejected.iter().take(3) {
        tracing::warn!(source, %reason, "record rejected");
    }
    let tick = Instant::now();
    store[0].reject(source, &rejected, fetched_at).await?;
    let accepted = records.len();
    let mut records = records;
    let second = records.split_off(records.len() / 2);
    let (a, b) = tokio::join!(store[0].insert(topic, records), store[1].insert(topic, second));
    let mut rows = a?;
    rows.extend(b?);
    metrics::stage_latency("audit", tick.elapsed());
    let duplicates = accepted - rows.len() + repeated;
    summary.audited += rows.len() as u64;
    summary.duplicates += duplicates as u64;
    metrics::audited(rows.len());
    metrics::duplicates(duplicates);
    Ok(rows)
}

/// Waits for the batch in flight and counts it.
async fn finish(
    in_flight: Option<JoinHandle<Result<usize, ProducerError>>>,
    summary: &mut Summary,
    progress: Option<&ProgressBar>,
) -> Result<(), ProducerError> {
    let Some(handle) = in_flight else { return Ok(()) };
    match handle.await.map_err(|e| ProducerError::Task(format!("the publish task failed: {e}")))? {
        Ok(n) => {
            summary.published += n as u64;
            if let Some(bar) = progress {
                bar.inc(n as u64);
            }
            Ok(())
        }
        Err(e) => {
            summary.publish_failures += 1;
            Err(e)
        }
    }
}

/// The configured source of users.
pub fn build_source(config: &Config, kind: SourceKind, seed: u64) -> Result<Source, ProducerError> {
    Ok(match kind {
        SourceKind::Synthetic => SyntheticSource::new(seed).into(),
        SourceKind::RandomUser => RandomUserSource::new(config.producer.randomuser.clone())?.into(),
    })
}

/// Sleeps unless shutdown comes first; false when stopping.
async fn sleep_or_stop(pause: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Publishes every audited-but-unpublished row (a crash between audit and publish).
async fn drain_outbox(store: &AuditStore, publisher: &Publisher, batch: usize) -> Result<u64, ProducerError> {
    let mut after = 0;
    let mut total = 0;
    loop {
        let rows = store.unpublished(publisher.topic(), after, batch.max(1) as i64).await?;
        let Some(last) = rows.last() else { return Ok(total) };
        after = last.seq;
        total += publish_rows(store, publisher, &rows).await? as u64;
    }
}

/// Publishes rows and marks the delivered ones; any failed delivery is an error (the failed
/// rows stay unpublished in the outbox).
async fn publish_rows(store: &AuditStore, publisher: &Publisher, rows: &[OutboxRow]) -> Result<usize, ProducerError> {
    let tick = Instant::now();
    let outcome = publisher.publish(rows, Utc::now()).await;
    metrics::stage_latency("publish", tick.elapsed());
    let tick = Instant::now();
    store.mark_published(&outcome.published).await?;
    metrics::stage_latency("mark", tick.elapsed());
    metrics::published(outcome.published.len());
    if let Some(err) = outcome.error(publisher.topic(), rows.len()) {
        metrics::publish_failed(outcome.failed.len());
        return Err(err.into());
    }
    Ok(outcome.published.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_keeps_the_first_copy_of_a_repeated_id_and_rejects_with_reasons() {
        let response: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/randomuser_v1_4.json")).expect("fixture");
        let users = response["results"].as_array().expect("results").clone();
        let mut bad = users[1].clone();
        bad["email"] = serde_json::json!("no-at-sign");
        let fetched = source::Fetched {
            users: vec![users[0].clone(), users[1].clone(), users[0].clone(), bad],
            rejected: Vec::new(),
            fetched_at: Utc::now(),
        };
        let batch = prepare("randomuser", fetched, 7);
        assert_eq!((batch.fetched, batch.records.len(), batch.duplicates, batch.rejected.len()), (4, 2, 1, 1));
        assert_eq!(batch.records[0].user_id.to_string(), users[0]["login"]["uuid"].as_str().unwrap_or_default());
        assert_eq!(&batch.records[0].kafka_value[..5], &[0, 0, 0, 0, 7], "registry framing with the schema id");
        assert!(batch.rejected[0].0.contains("email"));
        assert!(!batch.rejected[0].1.contains("password"), "credentials stripped from rejected payloads");
        assert!(!batch.records[0].payload.contains("\"salt\""));
    }
}
