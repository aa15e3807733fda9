//! The local engine: Kafka -> Arrow -> the shared transform on DataFusion -> Cassandra.
//!
//! One loop reads records and closes a micro-batch at `local.batch_size` records or after
//! `local.batch_timeout_ms`, whichever comes first, while watching for shutdown. A batch is
//! decoded into one Arrow record batch ([`crate::local::events`]), transformed by the SQL shared with
//! Spark ([`crate::transform`]), its valid rows written to Cassandra ([`sink`]) and its refused
//! records sent to the dead-letter topic with a reason. Only then are its offsets committed:
//! a crash re-reads at most the uncommitted batch, and the upserts make that harmless.

pub mod decode;
pub mod events;
pub mod metrics;
pub mod sink;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use datafusion::prelude::SessionContext;
use pipeline_core::clients::kafka::client_config;
use pipeline_core::model::{decode_avro_fields, UserEvent};
use pipeline_core::registry::{RegistryClient, RegistryError};
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::task::JoinHandle;

use crate::transform::{transform_sql, Engine, INPUT_VIEW};
use decode::{undecodable, Decoder, Payload};
use events::{Event, InputBuilder};
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
    /// Time from the start of the run to the last offset commit (`--until-idle` then still
    /// waits out `local.idle_timeout_ms` before it returns).
    pub last_commit_after: Option<Duration>,
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
    let run_started = Instant::now();
    let local = &config.local;
    let sink = Arc::new(CassandraSink::connect(&config.cassandra, local).await?);
    let mut decoder = Decoder::new(RegistryClient::from_config(&config.registry)?).map_err(LocalError::Transform)?;
    let revoked = Arc::new(Revocations::default());
    let consumer: EngineConsumer = client_config(&config.kafka, "local")
        .set("group.id", &local.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", config.job.starting_offsets.auto_offset_reset())
        // Bounded prefetch: memory stays flat however far behind the engine is.
        .set("queued.max.messages.kbytes", "32768")
        .create_with_context(EngineContext { revoked: revoked.clone() })?;
    consumer.subscribe(&[&config.kafka.topic])?;
    let dead_letters: FutureProducer = client_config(&config.kafka, "local-dead-letters")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let ctx = SessionContext::new();
    let sql = transform_sql(Engine::DataFusion);
    let batch_timeout = Duration::from_millis(local.batch_timeout_ms);
    let idle_timeout = Duration::from_millis(local.idle_timeout_ms);
    let mut summary = LocalSummary::default();
    let mut pending: Vec<Consumed> = Vec::with_capacity(local.batch_size);
    let mut last_record = Instant::now();
    // Up to MAX_BATCHES_IN_FLIGHT batches are written at once (sharing the sink's write
    // permits, so the next batch's writes fill the slots the last rows of the previous one
    // leave) while the next is prepared; they settle and commit in order. Memory is bounded.
    let mut in_flight: VecDeque<JoinHandle<Result<Delivered, LocalError>>> = VecDeque::new();
    // Records handed to the writers, settled or not (what `--max-records` counts).
    let mut dispatched: u64 = 0;
    let settler = Settler { consumer: &consumer, topic: &config.kafka.topic, started: run_started };
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
                    pending.push(Consumed {
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                    last_record = Instant::now();
                    if opts.max_records.is_some_and(|max| dispatched + pending.len() as u64 >= max) {
                        break;
                    }
                }
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => { stopping = true; break; }
            }
        }
        drop_revoked(&revoked, &mut pending);
        if !pending.is_empty() {
            // CPU work on this batch overlaps the writes of the previous one.
            let started = Instant::now();
            let prepared = prepare(&ctx, &sql, &mut decoder, std::mem::take(&mut pending)).await?;
            let prepare_ms = started.elapsed().as_secs_f64() * 1e3;
            settler.settle_until(&mut in_flight, MAX_BATCHES_IN_FLIGHT - 1, &mut summary).await?;
            tracing::trace!(prepare_ms, wait_ms = started.elapsed().as_secs_f64() * 1e3 - prepare_ms, "batch prepared");
            dispatched += prepared.consumed as u64;
            let (sink, producer, topic, stop) =
                (sink.clone(), dead_letters.clone(), config.kafka.dead_letter_topic.clone(), shutdown.clone());
            in_flight.push_back(tokio::spawn(async move {
                let delivered = deliver(&sink, &producer, &topic, prepared, &stop).await;
                metrics::batch_latency(started.elapsed());
                delivered
            }));
        } else {
            // Nothing new: let the batches in flight finish so their offsets are committed.
            settler.settle_until(&mut in_flight, 0, &mut summary).await?;
        }
        if stopping || shutdown.is_cancelled() {
            break;
        }
        if opts.max_records.is_some_and(|max| dispatched >= max) {
            break;
        }
        if opts.until_idle
            && in_flight.is_empty()
            && last_record.elapsed() >= idle_timeout
            && caught_up(&consumer, &config.kafka.topic)?
        {
            break;
        }
    }
    settler.settle_until(&mut in_flight, 0, &mut summary).await?;
    tracing::info!(?summary, "local engine stopped");
    Ok(summary)
}

/// Records of partitions revoked by a rebalance are dropped uncommitted: the partition's new
/// owner re-reads them (and the upserts make that harmless).
fn drop_revoked(revoked: &Revocations, pending: &mut Vec<Consumed>) {
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

/// A batch decoded and transformed, ready to be written.
struct Prepared {
    consumed: usize,
    rows: Vec<sink::CqlRow>,
    dead: Vec<DeadLetter>,
    next_offsets: HashMap<i32, i64>,
}

/// A record as consumed: key, bytes and where it came from (decoded later, in [`prepare`]).
struct Consumed {
    key: Option<String>,
    value: Vec<u8>,
    partition: i32,
    offset: i64,
}

/// A refused record, as consumed, and why.
struct DeadLetter {
    record: Consumed,
    reason: String,
}

/// What a delivered batch leaves to commit and count.
struct Delivered {
    consumed: usize,
    written: usize,
    dead_lettered: usize,
    next_offsets: HashMap<i32, i64>,
}

/// Decode -> Arrow -> the transform on DataFusion -> CQL rows and dead letters.
///
/// Values written with the event schema itself (the usual case) are decoded straight into the
/// Arrow builders; others are resolved by apache-avro first.
async fn prepare(
    ctx: &SessionContext,
    sql: &str,
    decoder: &mut Decoder,
    batch: Vec<Consumed>,
) -> Result<Prepared, LocalError> {
    let consumed = batch.len();
    let mut next_offsets: HashMap<i32, i64> = HashMap::new();
    let mut decoded = 0;
    let mut input = InputBuilder::with_capacity(batch.len());
    for m in &batch {
        let next = next_offsets.entry(m.partition).or_insert(0);
        *next = (*next).max(m.offset + 1);
        let push = |input: &mut InputBuilder, event: Event<'_>| {
            input.push(m.key.as_deref(), &m.value, m.partition, m.offset, event);
        };
        match decoder.resolve(Some(&m.value)).await? {
            Ok(Payload::Native { schema_id, datum }) => match decode_avro_fields(UserEvent::FIELDS, datum) {
                Ok(cells) => {
                    decoded += 1;
                    push(&mut input, Event::Cells(&cells));
                }
                Err(reason) => push(&mut input, Event::Error(&undecodable(schema_id, reason))),
            },
            Ok(Payload::Resolved(record)) => {
                decoded += 1;
                push(&mut input, Event::Value(&record));
            }
            Err(reason) => push(&mut input, Event::Error(&reason)),
        }
    }
    metrics::decoded(decoded);

    let input = input.finish().map_err(|e| LocalError::Transform(e.to_string()))?;
    let _ = ctx.deregister_table(INPUT_VIEW);
    ctx.register_batch(INPUT_VIEW, input).map_err(|e| LocalError::Transform(e.to_string()))?;
    let output = ctx
        .sql(sql)
        .await
        .map_err(|e| LocalError::Transform(e.to_string()))?
        .collect()
        .await
        .map_err(|e| LocalError::Transform(e.to_string()))?;

    let mut rows = Vec::new();
    let mut refused_at = Vec::new();
    for part in &output {
        let reasons =
            part.column_by_name("reject_reason").ok_or_else(|| LocalError::Transform("no reject_reason".into()))?;
        let valid_mask = arrow::compute::is_null(reasons).map_err(|e| LocalError::Transform(e.to_string()))?;
        let valid =
            arrow::compute::filter_record_batch(part, &valid_mask).map_err(|e| LocalError::Transform(e.to_string()))?;
        rows.extend(to_cql_rows(&valid)?);
        refused_at.extend(refused(part)?);
    }
    let mut by_position: HashMap<(i32, i64), Consumed> =
        batch.into_iter().map(|m| ((m.partition, m.offset), m)).collect();
    let dead = refused_at
        .into_iter()
        .filter_map(|(partition, offset, reason)| {
            Some(DeadLetter { record: by_position.remove(&(partition, offset))?, reason })
        })
        .collect();
    Ok(Prepared { consumed, rows, dead, next_offsets })
}

/// Writes the rows (retrying until they land) and delivers the dead letters.
async fn deliver(
    sink: &CassandraSink,
    producer: &FutureProducer,
    dead_letter_topic: &str,
    prepared: Prepared,
    shutdown: &CancellationToken,
) -> Result<Delivered, LocalError> {
    let Prepared { consumed, rows, dead, next_offsets } = prepared;
    let written = rows.len();
    let started = Instant::now();
    sink.write(rows, shutdown).await?;
    tracing::trace!(written, write_ms = started.elapsed().as_secs_f64() * 1e3, "batch written");
    metrics::written(written);
    let dead_lettered = send_dead_letters(producer, dead_letter_topic, &dead).await?;
    Ok(Delivered { consumed, written, dead_lettered, next_offsets })
}

/// Batches written at once (the oldest settles before another starts).
const MAX_BATCHES_IN_FLIGHT: usize = 2;

/// Settles written batches: commits their offsets and counts them.
struct Settler<'a> {
    consumer: &'a EngineConsumer,
    topic: &'a str,
    started: Instant,
}

impl Settler<'_> {
    /// Settles the oldest batches until at most `keep` are in flight.
    async fn settle_until(
        &self,
        in_flight: &mut VecDeque<JoinHandle<Result<Delivered, LocalError>>>,
        keep: usize,
        summary: &mut LocalSummary,
    ) -> Result<(), LocalError> {
        while in_flight.len() > keep {
            if let Some(oldest) = in_flight.pop_front() {
                self.settle(oldest, summary).await?;
            }
        }
        Ok(())
    }

    /// Waits for a batch in flight, then commits its offsets and counts it.
    async fn settle(
        &self,
        handle: JoinHandle<Result<Delivered, LocalError>>,
        summary: &mut LocalSummary,
    ) -> Result<(), LocalError> {
        let delivered = handle.await.map_err(|e| LocalError::Transform(format!("the write task failed: {e}")))??;
        commit(self.consumer, self.topic, &delivered.next_offsets)?;
        summary.last_commit_after = Some(self.started.elapsed());
        summary.consumed += delivered.consumed as u64;
        summary.written += delivered.written as u64;
        summary.dead_lettered += delivered.dead_lettered as u64;
        summary.batches += 1;
        metrics::consumed(delivered.consumed);
        tracing::debug!(
            records = delivered.consumed,
            written = delivered.written,
            dead = delivered.dead_lettered,
            "batch committed"
        );
        Ok(())
    }
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
async fn send_dead_letters(producer: &FutureProducer, topic: &str, dead: &[DeadLetter]) -> Result<usize, LocalError> {
    if dead.is_empty() {
        return Ok(0);
    }
    let sends = dead.iter().map(|DeadLetter { record: d, reason }| {
        let position = format!("{}:{}", d.partition, d.offset);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "reason", value: Some(reason.as_str()) })
            .insert(Header { key: "engine", value: Some("datafusion") })
            .insert(Header { key: "source_offset", value: Some(position.as_str()) });
        let mut record = FutureRecord::to(topic).payload(d.value.as_slice()).headers(headers);
        if let Some(k) = &d.key {
            record = record.key(k.as_str());
        }
        producer.send(record, Timeout::After(Duration::from_secs(30)))
    });
    let results = futures::future::join_all(sends).await;
    let failed: Vec<String> = results.into_iter().filter_map(|r| r.err().map(|(e, _)| e.to_string())).collect();
    if let Some(first) = failed.first() {
        return Err(LocalError::DeadLetter(failed.len(), topic.to_string(), first.clone()));
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
