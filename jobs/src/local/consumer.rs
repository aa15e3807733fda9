//! The engine's Kafka consumer, kept off the async runtime.
//!
//! A dedicated thread polls the consumer (rebalance callbacks run there) and hands records to
//! the engine through a bounded channel; offset commits, end-of-topic checks and the closing
//! of the consumer run on blocking threads. No synchronous rdkafka call runs on a tokio worker.
//!
//! Rebalances: every partition the consumer owns carries an *epoch*, new at each assignment,
//! and every record carries the epoch of its partition when it was read. A batch commits a
//! partition only if the consumer still owns it under the same epoch; the revoke callback
//! waits for a commit in progress and then removes the revoked partitions, so once a revoke
//! completes no batch read before it can commit them (the new owner re-reads from the last
//! commit; upserts make that harmless). Commits refused because the group is rebalancing are
//! expected and skipped, never fatal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pipeline_core::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::LocalError;

/// How long an offset query (committed offsets, watermarks) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A record as consumed: key, bytes, where it came from and under which assignment.
pub struct Consumed {
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
    /// The epoch of the partition's assignment when the record was read.
    pub epoch: u64,
}

/// What the polling thread hands to the engine.
pub enum Polled {
    Record(Consumed),
    Error(KafkaError),
}

/// The partitions owned now, each with the epoch of its assignment.
#[derive(Default)]
struct Owned {
    epochs: HashMap<(String, i32), u64>,
    next_epoch: u64,
}

/// Ownership shared by the polling thread (rebalance callbacks), the commit threads and the
/// engine (which only takes `owned` briefly).
#[derive(Default)]
struct Ownership {
    owned: Mutex<Owned>,
    /// Held for the whole of a commit, and by the revoke callback: a revoke waits for the
    /// commit in progress, and no commit of a revoked partition starts after it.
    gate: Mutex<()>,
}

impl Ownership {
    fn owned(&self) -> MutexGuard<'_, Owned> {
        self.owned.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct EngineContext {
    ownership: Arc<Ownership>,
}

impl ClientContext for EngineContext {}

impl ConsumerContext for EngineContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let _gate = self.ownership.gate();
            let mut owned = self.ownership.owned();
            for e in tpl.elements() {
                owned.epochs.remove(&(e.topic().to_string(), e.partition()));
            }
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?partitions, "partitions revoked: their uncommitted records are left to the next owner");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut owned = self.ownership.owned();
                owned.next_epoch += 1;
                let epoch = owned.next_epoch;
                for e in tpl.elements() {
                    owned.epochs.insert((e.topic().to_string(), e.partition()), epoch);
                }
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, epoch, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
        }
    }
}

type EngineConsumer = BaseConsumer<EngineContext>;

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Committed {
    /// Every partition was committed.
    All,
    /// Some or all partitions were skipped: no longer owned under the batch's epoch, or the
    /// group was rebalancing. Their records are re-read by the next owner.
    Skipped(String),
}

/// The consumer, its polling thread and the channel of what it reads.
pub struct KafkaSource {
    consumer: Option<Arc<EngineConsumer>>,
    ownership: Arc<Ownership>,
    records: mpsc::Receiver<Polled>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
    topic: String,
}

impl KafkaSource {
    /// Subscribes to `kafka.topic` with `config` and starts polling; at most `buffer` records
    /// wait in the channel.
    pub fn start(config: ClientConfig, kafka: &KafkaConfig, buffer: usize) -> Result<KafkaSource, LocalError> {
        let ownership = Arc::new(Ownership::default());
        let consumer: EngineConsumer = config.create_with_context(EngineContext { ownership: ownership.clone() })?;
        consumer.subscribe(&[&kafka.topic])?;
        let consumer = Arc::new(consumer);
        let (tx, records) = mpsc::channel(buffer.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (consumer, ownership, stop) = (consumer.clone(), ownership.clone(), stop.clone());
            std::thread::Builder::new()
                .name("local-consumer".into())
                .spawn(move || poll_loop(&consumer, &ownership, &stop, &tx))
                .map_err(|e| LocalError::Transform(format!("cannot start the consumer thread: {e}")))?
        };
        Ok(KafkaSource {
            consumer: Some(consumer),
            ownership,
            records,
            stop,
            poller: Some(poller),
            topic: kafka.topic.clone(),
        })
    }

    /// The next record (or consumer error); `None` once the polling thread has ended.
    pub async fn recv(&mut self) -> Option<Polled> {
        self.records.recv().await
    }

    /// Keeps only records of partitions still owned under the epoch they were read in; returns
    /// how many were dropped (left uncommitted, for the next owner).
    pub fn retain_owned(&self, records: &mut Vec<Consumed>) -> usize {
        let owned = self.ownership.owned();
        let before = records.len();
        records.retain(|m| owned.epochs.get(&(self.topic.clone(), m.partition)) == Some(&m.epoch));
        before - records.len()
    }

    fn consumer(&self) -> Result<Arc<EngineConsumer>, LocalError> {
        self.consumer.clone().ok_or_else(|| LocalError::Transform("the consumer is closed".into()))
    }

    /// Commits `next` (partition -> (next offset, epoch)) on a blocking thread, for the
    /// partitions still owned under the same epoch.
    pub async fn commit(&self, next: HashMap<i32, (i64, u64)>) -> Result<Committed, LocalError> {
        if next.is_empty() {
            return Ok(Committed::All);
        }
        let (consumer, ownership, topic) = (self.consumer()?, self.ownership.clone(), self.topic.clone());
        let task = move || -> Result<Committed, LocalError> {
            let _gate = ownership.gate();
            let mut tpl = TopicPartitionList::new();
            let mut moved = Vec::new();
            {
                let owned = ownership.owned();
                for (p, (offset, epoch)) in &next {
                    if owned.epochs.get(&(topic.clone(), *p)) == Some(epoch) {
                        tpl.add_partition_offset(&topic, *p, Offset::Offset(*offset))?;
                    } else {
                        moved.push(*p);
                    }
                }
            }
            if tpl.count() > 0 {
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    return match rebalancing(&e) {
                        true => Ok(Committed::Skipped(format!("the group is rebalancing ({e})"))),
                        false => Err(e.into()),
                    };
                }
            }
            Ok(match moved.is_empty() {
                true => Committed::All,
                false => Committed::Skipped(format!("partitions {moved:?} were revoked since the batch was read")),
            })
        };
        tokio::task::spawn_blocking(task)
            .await
            .map_err(|e| LocalError::Transform(format!("the commit task failed: {e}")))?
    }

    /// True when every assigned partition's committed offset has reached its end (asked on a
    /// blocking thread). Records each partition's lag.
    pub async fn caught_up(&self) -> Result<bool, LocalError> {
        let (consumer, topic) = (self.consumer()?, self.topic.clone());
        let task = move || -> Result<bool, LocalError> {
            let assignment = consumer.assignment()?;
            if assignment.count() == 0 {
                return Ok(false);
            }
            let committed = consumer.committed(Timeout::After(QUERY_TIMEOUT))?;
            for e in assignment.elements_for_topic(&topic) {
                let (low, high) = consumer.fetch_watermarks(&topic, e.partition(), QUERY_TIMEOUT)?;
                let position = committed
                    .find_partition(&topic, e.partition())
                    .and_then(|c| match c.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(low);
                super::metrics::lag(e.partition(), high - position);
                if position < high {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        tokio::task::spawn_blocking(task)
            .await
            .map_err(|e| LocalError::Transform(format!("the end-of-topic check failed: {e}")))?
    }

    /// Stops polling and closes the consumer (leaving the group) on a blocking thread.
    pub async fn close(mut self) {
        if let Some(closing) = self.begin_close() {
            let _ = tokio::task::spawn_blocking(closing).await;
        }
    }

    fn begin_close(&mut self) -> Option<impl FnOnce() + Send + 'static> {
        self.stop.store(true, Ordering::Relaxed);
        // A poller blocked on a full channel wakes up once the receiver is closed.
        self.records.close();
        let (consumer, poller) = (self.consumer.take(), self.poller.take());
        if consumer.is_none() && poller.is_none() {
            return None;
        }
        Some(move || {
            if let Some(p) = poller {
                let _ = p.join();
            }
            drop(consumer);
        })
    }
}

impl Drop for KafkaSource {
    /// Dropped without [`KafkaSource::close`] (an error ended the run): close on a thread of
    /// its own rather than on the runtime.
    fn drop(&mut self) {
        if let Some(closing) = self.begin_close() {
            let _ = std::thread::Builder::new().name("local-consumer-close".into()).spawn(closing);
        }
    }
}

/// A value whose drop blocks (an rdkafka producer joins its polling thread and flushes): it is
/// dropped on a thread of its own, never on the runtime.
pub struct DropOffRuntime<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> DropOffRuntime<T> {
    pub fn new(value: T) -> Self {
        DropOffRuntime(Some(value))
    }
}

impl<T: Send + 'static> std::ops::Deref for DropOffRuntime<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `drop` takes the value out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl<T: Send + 'static> Drop for DropOffRuntime<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            if let Err(e) = std::thread::Builder::new().name("local-drop".into()).spawn(move || drop(value)) {
                tracing::warn!("cannot drop a Kafka client off the runtime: {e}");
            }
        }
    }
}

/// Commit errors that only mean the group is rebalancing (or this member left it): the batch's
/// partitions go to their next owner, which re-reads them.
pub fn rebalancing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::AssignmentLost
                | RDKafkaErrorCode::StaleMemberEpoch
                | RDKafkaErrorCode::FencedInstanceId
                | RDKafkaErrorCode::State
        )
    )
}

/// The polling thread: reads records (tagging each with its partition's epoch) until stopped
/// or the engine is gone.
fn poll_loop(consumer: &EngineConsumer, ownership: &Ownership, stop: &AtomicBool, tx: &mpsc::Sender<Polled>) {
    while !stop.load(Ordering::Relaxed) {
        let polled = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(m)) => {
                let epoch = ownership.owned().epochs.get(&(m.topic().to_string(), m.partition())).copied();
                let Some(epoch) = epoch else { continue };
                Polled::Record(Consumed {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                    epoch,
                })
            }
            Some(Err(e)) => Polled::Error(e),
        };
        if tx.blocking_send(polled).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_commit_errors_are_expected_others_are_not() {
        for code in [
            RDKafkaErrorCode::RebalanceInProgress,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::UnknownMemberId,
        ] {
            assert!(rebalancing(&KafkaError::ConsumerCommit(code)), "{code:?}");
        }
        for code in [RDKafkaErrorCode::BrokerTransportFailure, RDKafkaErrorCode::TopicAuthorizationFailed] {
            assert!(!rebalancing(&KafkaError::ConsumerCommit(code)), "{code:?}");
        }
    }
}
