//! Kafka: topics, end offsets, messages/s, the local engine's lag, the dead-letter topic.
//!
//! One consumer does all of it, on its own thread (librdkafka calls block). It joins no group:
//! partitions are assigned by hand, nothing is committed. Its `group.id` is the local engine's
//! group, which is only used to read that group's committed offsets. Each round it reads
//! - the dead-letter topic from where it stopped (headers and key only are kept),
//! - the tail of the pipeline's topic (the newest keys, for the latency probe).
//!
//! Bytes per topic come from the broker's log folder when it is local ([`crate::disk`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use pipeline_core::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::state::{self, DeadLetter, KafkaView, PartitionView, Shared, TopicView};

/// The newest records of the topic read each round for the latency probe, per partition.
const TAIL_PER_PARTITION: i64 = 50;
/// Dead letters kept for the page.
const LATEST_DEAD_LETTERS: usize = 50;
/// Distinct reasons counted; further ones are counted as "other reasons".
const MAX_REASONS: usize = 100;
/// Other topics listed (name and partitions) besides the pipeline's two.
const MAX_OTHER_TOPICS: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(3);

/// A record key seen in the topic, with its Kafka timestamp (ms).
pub type KeySeen = (String, i64);

struct Reader {
    consumer: BaseConsumer,
    topic: String,
    dlq: String,
    /// Next offset to read, per (topic, partition).
    positions: HashMap<(String, i32), i64>,
    previous_end: Option<(Instant, i64)>,
    dlq_reasons: BTreeMap<String, u64>,
    dlq_read: u64,
    dlq_latest: std::collections::VecDeque<DeadLetter>,
    other_topics: Vec<(String, usize)>,
    metadata_at: Option<Instant>,
    /// The broker's log folder, when on this machine, and the sizes read from it.
    log_dir: Option<std::path::PathBuf>,
    bytes: BTreeMap<String, u64>,
    bytes_at: Option<Instant>,
    previous_bytes: Option<(Instant, u64)>,
    bytes_per_sec: Option<f64>,
}

/// How often the log folder's sizes are read.
const BYTES_PERIOD: Duration = Duration::from_secs(2);

/// Runs the Kafka collector until `shutdown`; keys of new records go to `keys`.
pub fn run(config: Config, shared: Shared, keys: SyncSender<KeySeen>, shutdown: CancellationToken) {
    let mut reader: Option<Reader> = None;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        if reader.is_none() {
            match Reader::new(&config) {
                Ok(r) => reader = Some(r),
                Err(e) => state::update(&shared, |s| s.kafka.fail(e)),
            }
        }
        if let Some(r) = reader.as_mut() {
            if let Err(e) = r.round(&shared, &keys) {
                state::update(&shared, |s| s.kafka.fail(e));
            }
        }
        let rest = Duration::from_secs(1).saturating_sub(started.elapsed());
        std::thread::sleep(rest.max(Duration::from_millis(100)));
    }
}

impl Reader {
    fn new(config: &Config) -> Result<Reader, String> {
        let consumer: BaseConsumer = pipeline_core::clients::kafka::client_config(&config.kafka, "dashboard")
            .set("group.id", &config.local.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Small fetches: the dashboard's memory stays flat however large the backlog.
            .set("queued.max.messages.kbytes", "2048")
            .set("max.partition.fetch.bytes", "262144")
            .set("fetch.max.bytes", "1048576")
            // Offset requests queue behind a long-polling fetch on the same connection: keep
            // fetches short, and none in flight outside `read` (see there).
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| format!("cannot create the Kafka client: {e}"))?;
        Ok(Reader {
            consumer,
            topic: config.kafka.topic.clone(),
            dlq: config.kafka.dead_letter_topic.clone(),
            positions: HashMap::new(),
            previous_end: None,
            dlq_reasons: BTreeMap::new(),
            dlq_read: 0,
            dlq_latest: Default::default(),
            other_topics: Vec::new(),
            metadata_at: None,
            log_dir: crate::disk::kafka_log_dir(config),
            bytes: BTreeMap::new(),
            bytes_at: None,
            previous_bytes: None,
            bytes_per_sec: None,
        })
    }

    fn partitions(&self, topic: &str) -> Result<Vec<i32>, String> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(|e| format!("Kafka metadata of {topic}: {e}"))?;
        Ok(md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default())
    }

    fn watermarks(&self, topic: &str) -> Result<Vec<PartitionView>, String> {
        let mut out = Vec::new();
        for partition in self.partitions(topic)? {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, TIMEOUT)
                .map_err(|e| format!("end offsets of {topic}/{partition}: {e}"))?;
            out.push(PartitionView { partition, low, high });
        }
        Ok(out)
    }

    fn refresh_other_topics(&mut self) -> Result<(), String> {
        if self.metadata_at.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return Ok(());
        }
        let md = self.consumer.fetch_metadata(None, TIMEOUT).map_err(|e| format!("Kafka metadata: {e}"))?;
        let mut others: Vec<(String, usize)> = md
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.name() != self.topic && t.name() != self.dlq)
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect();
        others.sort();
        others.truncate(MAX_OTHER_TOPICS);
        self.other_topics = others;
        self.metadata_at = Some(Instant::now());
        Ok(())
    }

    /// Topic sizes from the log folder (every [`BYTES_PERIOD`]) and the pipeline topic's bytes/s.
    fn refresh_bytes(&mut self) {
        let Some(dir) = &self.log_dir else { return };
        if self.bytes_at.is_some_and(|t| t.elapsed() < BYTES_PERIOD) {
            return;
        }
        let now = Instant::now();
        self.bytes_at = Some(now);
        match crate::disk::topic_bytes(dir) {
            Ok(bytes) => self.bytes = bytes,
            Err(e) => {
                tracing::debug!("Kafka log folder {}: {e}", dir.display());
                self.bytes.clear();
                return;
            }
        }
        let Some(&total) = self.bytes.get(&self.topic) else { return };
        // Retention deletes whole segments: a shrinking size is not a negative rate.
        self.bytes_per_sec = match self.previous_bytes {
            Some((at, prev)) if now > at => Some(total.saturating_sub(prev) as f64 / (now - at).as_secs_f64()),
            _ => None,
        };
        self.previous_bytes = Some((now, total));
    }

    /// The local engine's lag: end offsets minus its group's committed offsets.
    fn local_lag(&self, ends: &[PartitionView]) -> Result<Option<i64>, String> {
        let mut tpl = TopicPartitionList::new();
        for p in ends {
            tpl.add_partition(&self.topic, p.partition);
        }
        let committed = self.consumer.committed_offsets(tpl, TIMEOUT).map_err(|e| format!("committed offsets: {e}"))?;
        let mut lag = 0;
        let mut any = false;
        for p in ends {
            if let Some(Offset::Offset(o)) = committed.find_partition(&self.topic, p.partition).map(|e| e.offset()) {
                any = true;
                lag += (p.high - o).max(0);
            }
        }
        Ok(any.then_some(lag))
    }

    fn round(&mut self, shared: &Shared, keys: &SyncSender<KeySeen>) -> Result<(), String> {
        let t0 = Instant::now();
        let main = self.watermarks(&self.topic)?;
        let dlq = self.watermarks(&self.dlq)?;
        self.refresh_other_topics()?;
        let local_lag = self.local_lag(&main)?;
        self.read(&main, &dlq, keys)?;
        self.refresh_bytes();
        tracing::debug!(took = ?t0.elapsed(), "kafka round");

        let end: i64 = main.iter().map(|p| p.high).sum();
        let now = Instant::now();
        let rate = match self.previous_end {
            Some((at, prev)) if now > at => (end - prev).max(0) as f64 / (now - at).as_secs_f64(),
            _ => 0.0,
        };
        self.previous_end = Some((now, end));
        let spark_lag = state::read(shared, |s| spark_lag(s, &main));
        let bytes = &self.bytes;
        let topic_view = |name: &str, parts: Vec<PartitionView>| TopicView {
            name: name.to_string(),
            partitions: parts.len(),
            end_offset: Some(parts.iter().map(|p| p.high).sum()),
            records: Some(parts.iter().map(|p| p.high - p.low).sum()),
            bytes: bytes.get(name).copied(),
            per_partition: parts,
        };
        let dlq_count: i64 = dlq.iter().map(|p| p.high - p.low).sum();
        let mut topics = vec![topic_view(&self.topic, main), topic_view(&self.dlq, dlq)];
        topics.extend(self.other_topics.iter().map(|(name, partitions)| TopicView {
            name: name.clone(),
            partitions: *partitions,
            end_offset: None,
            records: None,
            bytes: self.bytes.get(name).copied(),
            per_partition: Vec::new(),
        }));
        let mut lag = BTreeMap::new();
        lag.insert("spark".to_string(), spark_lag);
        lag.insert("datafusion".to_string(), local_lag);
        let at = state::now_ms();
        let dlq_view = crate::state::DlqView {
            topic: self.dlq.clone(),
            count: dlq_count,
            by_reason: self.dlq_reasons.clone(),
            read: self.dlq_read,
            latest: self.dlq_latest.clone(),
        };
        let (bytes_per_sec, log_dir) = (self.bytes_per_sec, self.log_dir.as_ref().map(|d| d.display().to_string()));
        let bytes_fresh = self.bytes_at.is_some_and(|t| t.elapsed() < Duration::from_millis(500));
        state::update(shared, |s| {
            s.kafka.set(KafkaView { topics, messages_per_sec: rate, lag, bytes_per_sec, log_dir });
            if bytes_fresh {
                if let Some(b) = bytes_per_sec {
                    s.charts.bytes.push(at, &[Some(b)]);
                }
            }
            s.dlq.set(dlq_view);
            s.charts.messages.push(at, &[Some(rate)]);
            s.charts.lag.push(at, &[spark_lag.map(|v| v as f64), local_lag.map(|v| v as f64)]);
        });
        Ok(())
    }

    /// Reads new dead letters and the tail of the topic, for at most half a second.
    fn read(
        &mut self,
        main: &[PartitionView],
        dlq: &[PartitionView],
        keys: &SyncSender<KeySeen>,
    ) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        let mut ends: HashMap<(String, i32), i64> = HashMap::new();
        for p in main {
            let pos = self.positions.get(&(self.topic.clone(), p.partition)).copied().unwrap_or(p.high);
            let from = pos.max(p.high - TAIL_PER_PARTITION).max(p.low);
            if from < p.high {
                tpl.add_partition_offset(&self.topic, p.partition, Offset::Offset(from)).map_err(|e| e.to_string())?;
                ends.insert((self.topic.clone(), p.partition), p.high);
            }
            self.positions.insert((self.topic.clone(), p.partition), from);
        }
        for p in dlq {
            let pos = self.positions.get(&(self.dlq.clone(), p.partition)).copied().unwrap_or(p.low).max(p.low);
            if pos < p.high {
                tpl.add_partition_offset(&self.dlq, p.partition, Offset::Offset(pos)).map_err(|e| e.to_string())?;
                ends.insert((self.dlq.clone(), p.partition), p.high);
            }
            self.positions.insert((self.dlq.clone(), p.partition), pos);
        }
        if ends.is_empty() {
            return Ok(());
        }
        self.consumer.assign(&tpl).map_err(|e| format!("assigning partitions: {e}"))?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while !ends.is_empty() && Instant::now() < deadline {
            let Some(result) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("dashboard consumer: {e}");
                    continue;
                }
            };
            let key = (m.topic().to_string(), m.partition());
            self.positions.insert(key.clone(), m.offset() + 1);
            if ends.get(&key).is_some_and(|end| m.offset() + 1 >= *end) {
                ends.remove(&key);
            }
            let key_text = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            let timestamp = m.timestamp().to_millis();
            if m.topic() == self.topic {
                // A full channel means the latency probe is behind: dropping a sample is fine.
                let _ = keys.try_send((key_text, timestamp.unwrap_or(0)));
            } else {
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value))
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                let letter = DeadLetter {
                    reason: header("reason"),
                    engine: header("engine"),
                    source_offset: header("source_offset"),
                    key: key_text,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: timestamp,
                };
                self.count_reason(&letter.reason);
                self.dlq_latest.push_front(letter);
                self.dlq_latest.truncate(LATEST_DEAD_LETTERS);
            }
        }
        // No fetch in flight until the next read: the offset requests of the next round would
        // wait behind it.
        self.consumer.unassign().map_err(|e| format!("unassigning partitions: {e}"))?;
        // Newest first across partitions.
        self.dlq_latest
            .make_contiguous()
            .sort_by(|a, b| b.timestamp_ms.cmp(&a.timestamp_ms).then(b.offset.cmp(&a.offset)));
        Ok(())
    }

    fn count_reason(&mut self, reason: &str) {
        self.dlq_read += 1;
        let reason = if reason.is_empty() { "(no reason header)" } else { reason };
        if self.dlq_reasons.contains_key(reason) || self.dlq_reasons.len() < MAX_REASONS {
            *self.dlq_reasons.entry(reason.to_string()).or_default() += 1;
        } else {
            *self.dlq_reasons.entry("other reasons".to_string()).or_default() += 1;
        }
    }
}

/// The Spark query's lag: end offsets minus the offsets its latest committed batch read up to
/// (from its checkpoint when readable here, else from its latest progress).
fn spark_lag(s: &state::Snapshot, ends: &[PartitionView]) -> Option<i64> {
    let query = s.spark.data.as_ref()?.queries.iter().find(|q| q.name == s.query_name && q.active)?;
    let offsets = if query.checkpoint_offsets.is_empty() { &query.end_offsets } else { &query.checkpoint_offsets };
    if offsets.is_empty() {
        return None;
    }
    Some(ends.iter().map(|p| (p.high - offsets.get(&p.partition).copied().unwrap_or(0)).max(0)).sum())
}
