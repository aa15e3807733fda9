//! The local engine: Kafka -> Arrow -> the shared transform on DataFusion -> Cassandra.
//!
//! One loop reads records and closes a micro-batch at `local.batch_size` records or after
//! `local.batch_timeout_ms`, whichever comes first, while watching for shutdown. A batch is
//! decoded into one Arrow record batch ([`crate::events`]), transformed by the SQL shared with
//! Spark ([`crate::transform`]), its valid rows written to Cassandra ([`sink`]) and its refused
//! records sent to the dead-letter topic with a reason. Only then are its offsets committed:
//! a crash re-reads at most the uncommitted batch, and the upserts make that harmless.

pub mod decode;
pub mod metrics;
pub mod sink;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use pipeline_core::registry::{RegistryClient, RegistryError};
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::events::{to_batch, Message};
use crate::transform::{transform_sql, Engine, INPUT_VIEW};
use decode::Decoder;
use sink::{to_cql_rows, CassandraSink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("Kafka: {0} (is it running? `pipeline cluster up kafka`)")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the transform failed: {0}")]
    Transform(String),
    #[error("{0} dead letter(s) could not be delivered to `{1}`: {2}")]
    DeadLetter(usize, String, String),
    #[error("cannot prepare Cassandra: {0}")]
    Setup(String),
}

/// How long to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalOptions {
    /// Exit once every partition is consumed to its end and everything is written.
    pub until_idle: bool,
    /// Exit after this many records are processed.
    pub max_records: Option<u64>,
}

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalSummary {
    pub consumed: u64,
    pub written: u64,
    pub dead_lettered: u64,
    pub batches: u64,
}

/// Partitions revoked by a rebalance since the loop last looked.
#[derive(Default)]
struct Revocations(Mutex<Vec<(String, i32)>>);

struct EngineContext {
    revoked: Arc<Revocations>,
}

impl ClientContext for EngineContext {}

impl ConsumerContext for EngineContext {
    fn pre_rebalance(&self, _consumer: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut revoked) = self.revoked.0.lock() {
                revoked.extend(tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())));
            }
        }
    }
}

type EngineConsumer = StreamConsumer<EngineContext>;

/// Runs the local engine until shutdown, `until_idle` or `max_records`.
pub async fn run(config: &Config, opts: LocalOptions, shutdown: CancellationToken) -> Result<LocalSummary, LocalError> {
    let local = &config.local;
    crate::spark::ensure_table(config).await.map_err(|e| LocalError::Setup(e.to_string()))?;
    let sink = CassandraSink::connect(&config.cassandra, local).await?;
    let mut decoder = Decoder::new(RegistryClient::new(&config.registry.url)?).map_err(LocalError::Transform)?;
    let revoked = Arc::new(Revocations::default());
    let consumer: EngineConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("group.id", &local.group_id)
        .set("client.id", "pipeline-local")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Bounded prefetch: memory stays flat however far behind the engine is.
        .set("queued.max.messages.kbytes", "32768")
        .create_with_context(EngineContext { revoked: revoked.clone() })?;
    consumer.subscribe(&[&config.kafka.topic])?;
    let dead_letters: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let ctx = SessionContext::new();
    let sql = transform_sql(Engine::DataFusion);
    let batch_timeout = Duration::from_millis(local.batch_timeout_ms);
    let idle_timeout = Duration::from_millis(local.idle_timeout_ms);
    let mut summary = LocalSummary::default();
    let mut pending: Vec<Message> = Vec::with_capacity(local.batch_size);
    let mut last_record = Instant::now();
    tracing::info!(topic = %config.kafka.topic, group = %local.group_id, "local engine running");

    loop {
        let deadline = tokio::time::sleep(batch_timeout);
        tokio::pin!(deadline);
        // Fill a batch by size or time, watching shutdown.
        let mut stopping = false;
        while pending.len() < local.batch_size {
            tokio::select! {
                received = consumer.recv() => {
                    let m = received?;
                    pending.push(Message {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        partition: m.partition(),
                        offset: m.offset(),
                        event: Err(String::new()),
                    });
                    last_record = Instant::now();
                    if opts.max_records.is_some_and(|max| summary.consumed + pending.len() as u64 >= max) {
                        break;
                    }
                }
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => { stopping = true; break; }
            }
        }
        drop_revoked(&revoked, &mut pending);
        if !pending.is_empty() {
            let started = Instant::now();
            let batch = std::mem::take(&mut pending);
            let n = batch.len();
            let (written, dead) =
                process(config, &ctx, &sql, &mut decoder, &sink, &dead_letters, batch, &shutdown).await?;
            commit(&consumer, &config.kafka.topic, &written.1)?;
            summary.consumed += n as u64;
            summary.written += written.0 as u64;
            summary.dead_lettered += dead as u64;
            summary.batches += 1;
            metrics::consumed(n);
            metrics::batch_latency(started.elapsed());
            tracing::debug!(
                records = n,
                written = written.0,
                dead,
                ms = started.elapsed().as_millis() as u64,
                "batch committed"
            );
        }
        if stopping || shutdown.is_cancelled() {
            break;
        }
        if opts.max_records.is_some_and(|max| summary.consumed >= max) {
            break;
        }
        if opts.until_idle && last_record.elapsed() >= idle_timeout && caught_up(&consumer, &config.kafka.topic)? {
            break;
        }
    }
    tracing::info!(?summary, "local engine stopped");
    Ok(summary)
}

/// Records of partitions revoked by a rebalance are dropped uncommitted: the partition's new
/// owner re-reads them (and the upserts make that harmless).
fn drop_revoked(revoked: &Revocations, pending: &mut Vec<Message>) {
    let Ok(mut gone) = revoked.0.lock() else { return };
    if gone.is_empty() {
        return;
    }
    let partitions: Vec<i32> = gone.drain(..).map(|(_, p)| p).collect();
    let before = pending.len();
    pending.retain(|m| !partitions.contains(&m.partition));
    tracing::info!(
        ?partitions,
        dropped = before - pending.len(),
        "partitions revoked: their uncommitted records are left to the next owner"
    );
}

/// Decode -> transform -> write valid rows and dead letters. Returns ((rows written, next
/// offset per partition), dead letters).
#[allow(clippy::too_many_arguments)]
async fn process(
    config: &Config,
    ctx: &SessionContext,
    sql: &str,
    decoder: &mut Decoder,
    sink: &CassandraSink,
    dead_letters: &FutureProducer,
    mut batch: Vec<Message>,
    shutdown: &CancellationToken,
) -> Result<((usize, HashMap<i32, i64>), usize), LocalError> {
    let mut next_offsets: HashMap<i32, i64> = HashMap::new();
    let mut decoded = 0;
    for m in &mut batch {
        let next = next_offsets.entry(m.partition).or_insert(0);
        *next = (*next).max(m.offset + 1);
        let value = (!m.value.is_empty()).then_some(m.value.as_slice());
        m.event = decoder.decode(value).await?;
        decoded += usize::from(m.event.is_ok());
    }
    metrics::decoded(decoded);

    let input = to_batch(&batch).map_err(|e| LocalError::Transform(e.to_string()))?;
    let _ = ctx.deregister_table(INPUT_VIEW);
    ctx.register_batch(INPUT_VIEW, input).map_err(|e| LocalError::Transform(e.to_string()))?;
    let output = ctx
        .sql(sql)
        .await
        .map_err(|e| LocalError::Transform(e.to_string()))?
        .collect()
        .await
        .map_err(|e| LocalError::Transform(e.to_string()))?;

    let mut written = 0;
    let mut dead = Vec::new();
    for part in &output {
        let reasons =
            part.column_by_name("reject_reason").ok_or_else(|| LocalError::Transform("no reject_reason".into()))?;
        let valid_mask = arrow::compute::is_null(reasons).map_err(|e| LocalError::Transform(e.to_string()))?;
        let valid =
            arrow::compute::filter_record_batch(part, &valid_mask).map_err(|e| LocalError::Transform(e.to_string()))?;
        let rows = to_cql_rows(&valid)?;
        written += rows.len();
        sink.write(rows, shutdown).await?;
        dead.extend(refused(part)?);
    }
    metrics::written(written);
    let dead_count = send_dead_letters(config, dead_letters, &batch, &dead).await?;
    Ok(((written, next_offsets), dead_count))
}

/// (partition, offset, reason) of every refused record of a transform output.
fn refused(part: &RecordBatch) -> Result<Vec<(i32, i64, String)>, LocalError> {
    let col = |name: &str| part.column_by_name(name).ok_or_else(|| LocalError::Transform(format!("no {name}")));
    let reasons = col("reject_reason")?;
    let reasons = reasons.as_string::<i32>();
    let partitions = arrow::compute::cast(col("kafka_partition")?, &arrow::datatypes::DataType::Int32)
        .map_err(|e| LocalError::Transform(e.to_string()))?;
    let offsets = arrow::compute::cast(col("kafka_offset")?, &arrow::datatypes::DataType::Int64)
        .map_err(|e| LocalError::Transform(e.to_string()))?;
    Ok((0..part.num_rows())
        .filter(|i| reasons.is_valid(*i))
        .map(|i| {
            (
                partitions.as_primitive::<Int32Type>().value(i),
                offsets.as_primitive::<Int64Type>().value(i),
                reasons.value(i).to_string(),
            )
        })
        .collect())
}

/// The original bytes of each refused record, with `reason`, `engine` and `source_offset`
/// headers; waits for every delivery.
async fn send_dead_letters(
    config: &Config,
    producer: &FutureProducer,
    batch: &[Message],
    dead: &[(i32, i64, String)],
) -> Result<usize, LocalError> {
    if dead.is_empty() {
        return Ok(0);
    }
    let by_position: HashMap<(i32, i64), &Message> = batch.iter().map(|m| ((m.partition, m.offset), m)).collect();
    let topic = &config.kafka.dead_letter_topic;
    let sends = dead.iter().filter_map(|(p, o, reason)| {
        let m = by_position.get(&(*p, *o))?;
        let position = format!("{p}:{o}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "reason", value: Some(reason.as_str()) })
            .insert(Header { key: "engine", value: Some("datafusion") })
            .insert(Header { key: "source_offset", value: Some(position.as_str()) });
        let mut record = FutureRecord::to(topic).payload(m.value.as_slice()).headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_str());
        }
        Some(producer.send(record, Timeout::After(Duration::from_secs(30))))
    });
    let results = futures::future::join_all(sends).await;
    let failed: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|(e, _)| e.to_string())).collect();
    if let Some(first) = failed.first() {
        return Err(LocalError::DeadLetter(failed.len(), topic.clone(), first.clone()));
    }
    metrics::dead_lettered(dead.len());
    Ok(dead.len())
}

/// Commits the next offset of every partition of the batch (after its writes succeeded).
fn commit(consumer: &EngineConsumer, topic: &str, next: &HashMap<i32, i64>) -> Result<(), LocalError> {
    if next.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

/// True when every assigned partition's committed offset has reached its end.
fn caught_up(consumer: &EngineConsumer, topic: &str) -> Result<bool, LocalError> {
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(false);
    }
    let committed = consumer.committed(Timeout::After(Duration::from_secs(10)))?;
    for e in assignment.elements_for_topic(topic) {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(10))?;
        let position = committed
            .find_partition(topic, e.partition())
            .and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(low);
        metrics::lag(e.partition(), high - position);
        if position < high {
            return Ok(false);
        }
    }
    Ok(true)
}
