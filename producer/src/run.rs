//! The producer loop: recover the outbox, then fetch -> normalise -> audit -> publish -> mark.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use chrono::Utc;
use indicatif::ProgressBar;
use pipeline_core::config::SourceKind;
use pipeline_core::model::event_avro_schema;
use pipeline_core::registry::{frame, RegistryClient, RegistryError};
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use tokio::task::JoinHandle;

use crate::audit::{AuditError, AuditRecord, AuditStore, OutboxRow};
use crate::metrics;
use crate::normalize::normalize;
use crate::publish::{PublishError, Publisher};
use crate::source::randomuser::{RandomUserConfig, RandomUserSource};
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
    #[error("the event schema does not parse: {0}")]
    Schema(String),
    #[error("{0}")]
    Options(String),
}

/// Registers the event schema (idempotent) and sets the subject's compatibility; returns the id.
pub async fn register_event_schema(config: &Config) -> Result<u32, ProducerError> {
    let registry = RegistryClient::new(&config.registry.url)?;
    let id = registry.register(&config.registry.subject, &event_avro_schema()).await?;
    registry.set_compatibility(&config.registry.subject, &config.registry.compatibility).await?;
    Ok(id)
}

/// Runs the producer until the count is reached, or until `shutdown` in interval mode.
/// The progress bar (if any) advances by published records.
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
    let store = Arc::new(AuditStore::connect(&config.postgres).await?);
    let schema_id = register_event_schema(config).await?;
    let schema = Schema::parse(&event_avro_schema()).map_err(|e| ProducerError::Schema(e.to_string()))?;
    let publisher = Arc::new(Publisher::new(&config.kafka, &config.producer.kafka)?);
    tracing::info!(schema_id, subject = %config.registry.subject, topic = publisher.topic(), "producer ready");

    let mut summary = Summary { recovered: drain_outbox(&store, &publisher, opts.batch).await?, ..Summary::default() };
    if summary.recovered > 0 {
        tracing::info!(recovered = summary.recovered, "published the outbox backlog of an earlier run");
    }

    let mut source = build_source(config, opts.source, opts.seed)?;
    let mut step = Step { store: &store, topic: publisher.topic(), schema: &schema, schema_id, source: &mut source };
    // Batch k is published (and marked) while batch k+1 is fetched and audited: one publish in
    // flight at a time keeps the order and bounds memory.
    let mut in_flight: Option<JoinHandle<Result<usize, ProducerError>>> = None;
    let pacing_start = Instant::now();
    let mut fetched_total: u64 = 0;
    loop {
        let want = match opts.count {
            Some(n) => (n - fetched_total).min(opts.batch as u64) as usize,
            None => opts.batch,
        };
        if want == 0 || shutdown.is_cancelled() {
            break;
        }
        let tick = Instant::now();
        let fetched = tokio::select! {
            r = step.source.fetch(want) => r,
            _ = shutdown.cancelled() => break,
        };
        metrics::stage_latency("fetch", tick.elapsed());
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) if opts.interval.is_some() => {
                // Interval mode keeps going: the next tick tries again.
                tracing::error!("fetch failed: {e}");
                metrics::fetch_failed();
                summary.fetch_failures += 1;
                if !sleep_or_stop(opts.interval.unwrap_or_default().saturating_sub(tick.elapsed()), &shutdown).await {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // Rejected records count toward the requested number: they were fetched.
        fetched_total += (fetched.users.len() + fetched.rejected.len()).max(1) as u64;
        let rows = step.audit(fetched, &mut summary).await?;
        finish(in_flight.take(), &mut summary, progress.as_ref()).await?;
        let (store, publisher) = (store.clone(), publisher.clone());
        in_flight = Some(tokio::spawn(async move { publish_rows(&store, &publisher, &rows).await }));

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
    finish(in_flight.take(), &mut summary, progress.as_ref()).await?;
    let _ = publisher.flush(Duration::from_secs(10));
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Waits for the batch in flight and counts it.
async fn finish(
    in_flight: Option<JoinHandle<Result<usize, ProducerError>>>,
    summary: &mut Summary,
    progress: Option<&ProgressBar>,
) -> Result<(), ProducerError> {
    let Some(handle) = in_flight else { return Ok(()) };
    match handle.await.map_err(|e| ProducerError::Options(format!("the publish task failed: {e}")))? {
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
        SourceKind::RandomUser => RandomUserSource::new(randomuser_config(config))?.into(),
    })
}

/// Maps `[producer.randomuser]` to the HTTP source's settings ("" means "not sent").
pub fn randomuser_config(config: &Config) -> RandomUserConfig {
    let api = &config.producer.randomuser;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    RandomUserConfig {
        base_url: api.base_url.clone(),
        api_version: opt(&api.api_version),
        nat: opt(&api.nat),
        seed: opt(&api.seed),
        inc: opt(&api.inc),
        exc: opt(&api.exc),
        connect_timeout: Duration::from_millis(api.connect_timeout_ms),
        request_timeout: Duration::from_millis(api.request_timeout_ms),
        max_body_bytes: api.max_body_mib * 1024 * 1024,
        max_retries: api.max_retries,
        backoff_base: Duration::from_millis(api.backoff_base_ms),
        backoff_max: Duration::from_millis(api.backoff_max_ms),
        ..RandomUserConfig::default()
    }
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
    store.mark_published(&outcome.published).await?;
    metrics::published(outcome.published.len());
    if let Some(err) = outcome.error(publisher.topic(), rows.len()) {
        metrics::publish_failed(outcome.failed.len());
        return Err(err.into());
    }
    Ok(outcome.published.len())
}

/// Everything one batch needs.
struct Step<'a> {
    store: &'a AuditStore,
    topic: &'a str,
    schema: &'a Schema,
    schema_id: u32,
    source: &'a mut Source,
}

impl Step<'_> {
    /// Normalise, encode and audit one fetch; returns the outbox rows to publish.
    async fn audit(
        &mut self,
        fetched: source::Fetched,
        summary: &mut Summary,
    ) -> Result<Vec<OutboxRow>, ProducerError> {
        let name = self.source.name();
        let produced_at = Utc::now();
        let mut rejected: Vec<(String, String)> = fetched.rejected.into_iter().map(|r| (r.reason, r.payload)).collect();
        let mut records = Vec::with_capacity(fetched.users.len());
        for user in &fetched.users {
            let normalized = normalize(user, name, fetched.fetched_at, produced_at).and_then(|n| {
                apache_avro::to_avro_datum(self.schema, n.event.to_avro())
                    .map(|datum| (n, datum))
                    .map_err(|e| format!("event does not match the schema: {e}"))
            });
            match normalized {
                Ok((n, datum)) => records.push(AuditRecord {
                    user_id: n.event.id,
                    source: name,
                    payload: n.payload,
                    kafka_value: frame(self.schema_id, &datum),
                    schema_id: self.schema_id,
                    fetched_at: fetched.fetched_at,
                }),
                Err(reason) => {
                    let mut payload = user.clone();
                    crate::normalize::strip_credentials(&mut payload);
                    rejected.push((reason, payload.to_string()));
                }
            }
        }
        summary.fetched += fetched.users.len() as u64;
        summary.rejected += rejected.len() as u64;
        metrics::fetched(name, fetched.users.len());
        metrics::rejected(name, rejected.len());
        for (reason, _) in rejected.iter().take(3) {
            tracing::warn!(source = name, %reason, "record rejected");
        }

        let tick = Instant::now();
        self.store.reject(name, &rejected, fetched.fetched_at).await?;
        let rows = self.store.insert(self.topic, &records).await?;
        metrics::stage_latency("audit", tick.elapsed());
        let duplicates = records.len() - rows.len();
        summary.audited += rows.len() as u64;
        summary.duplicates += duplicates as u64;
        metrics::audited(rows.len());
        metrics::duplicates(duplicates);

        Ok(rows)
    }
}
