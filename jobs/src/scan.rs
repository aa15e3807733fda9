//! Reading a whole Kafka topic once, from its low to its high watermarks, without a consumer
//! group: what `verify` and the dead-letter tools ([`crate::dlq`]) need.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use uuid::Uuid;

/// Upper bound on reading one topic from its low to its high watermarks.
pub const KAFKA_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Timeout of one Kafka metadata or watermark request.
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a topic could not be read; each message names the broker and what to try.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("Kafka at {bootstrap}: {what} failed: {reason} (is it running? `pipeline cluster up kafka`)")]
    Kafka { bootstrap: String, what: String, reason: String },
    #[error("Kafka topic `{topic}` does not exist at {bootstrap} (check kafka.topic in the configuration; `pipeline cluster up kafka` creates it)")]
    TopicMissing { topic: String, bootstrap: String },
    #[error("Kafka at {bootstrap}: read {read} of about {expected} records of `{topic}` within {} s (is the broker overloaded? check `pipeline cluster status` and retry)", .timeout.as_secs())]
    Timeout { bootstrap: String, topic: String, read: u64, expected: u64, timeout: Duration },
    #[error("the Kafka reader task for `{topic}` failed: {reason} (internal error; please report it)")]
    Join { topic: String, reason: String },
}

/// What a scan found out about the topic itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Whether the topic exists (a missing topic that is not required reads as empty).
    pub exists: bool,
    /// Some partition no longer starts at offset 0: older records were deleted (retention).
    pub truncated: bool,
    /// Records read.
    pub records: u64,
}

/// Reads `topic` on a blocking thread, calling `each(&mut state, message)` for every record
/// between the low and high watermarks taken at the start; returns the final state.
pub async fn scan<S, F>(
    bootstrap: &str,
    topic: &str,
    required: bool,
    state: S,
    each: F,
) -> Result<(Scanned, S), ScanError>
where
    S: Send + 'static,
    F: FnMut(&mut S, &BorrowedMessage<'_>) + Send + 'static,
{
    let (bootstrap, name) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || scan_blocking(&bootstrap, &name, required, KAFKA_READ_TIMEOUT, state, each))
        .await
        .map_err(|e| ScanError::Join { topic: topic.to_string(), reason: e.to_string() })?
}

/// Reads `topic` from the low to the high watermarks taken at the start, partition by
/// partition, with manual assignment: no group membership, no commits. A missing topic is an
/// error when `required`, else empty.
pub fn scan_blocking<S, F>(
    bootstrap: &str,
    topic: &str,
    required: bool,
    timeout: Duration,
    mut state: S,
    mut each: F,
) -> Result<(Scanned, S), ScanError>
where
    F: FnMut(&mut S, &BorrowedMessage<'_>),
{
    let kafka_err = |what: &str, e: KafkaError| ScanError::Kafka {
        bootstrap: bootstrap.to_string(),
        what: format!("{what} of `{topic}`"),
        reason: e.to_string(),
    };
    let consumer: BaseConsumer<QuietEof> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "pipeline-scan")
        // A group id of its own: `assign` never joins it and nothing is committed.
        .set("group.id", format!("pipeline-scan-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("allow.auto.create.topics", "false")
        .create_with_context(QuietEof)
        .map_err(|e| kafka_err("creating a consumer", e))?;

    let metadata =
        consumer.fetch_metadata(Some(topic), KAFKA_REQUEST_TIMEOUT).map_err(|e| kafka_err("fetching metadata", e))?;
    let partitions: Vec<i32> = match metadata.topics().first() {
        Some(t) => match t.error() {
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Vec::new(),
            Some(code) => {
                return Err(ScanError::Kafka {
                    bootstrap: bootstrap.to_string(),
                    what: format!("fetching metadata of `{topic}`"),
                    reason: format!("{code:?}"),
                })
            }
            None => t.partitions().iter().map(|p| p.id()).collect(),
        },
        None => Vec::new(),
    };
    if partitions.is_empty() {
        if required {
            return Err(ScanError::TopicMissing { topic: topic.to_string(), bootstrap: bootstrap.to_string() });
        }
        return Ok((Scanned::default(), state));
    }

    let mut scanned = Scanned { exists: true, ..Scanned::default() };
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0_u64;
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, KAFKA_REQUEST_TIMEOUT)
            .map_err(|e| kafka_err(&format!("fetching the watermarks of partition {p}"), e))?;
        scanned.truncated |= low > 0;
        if high > low {
            assignment
                .add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| kafka_err(&format!("assigning partition {p}"), e))?;
            ends.insert(p, high);
            expected += (high - low) as u64;
        }
    }
    if ends.is_empty() {
        return Ok((scanned, state));
    }
    consumer.assign(&assignment).map_err(|e| kafka_err("assigning partitions", e))?;

    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(ScanError::Timeout {
                bootstrap: bootstrap.to_string(),
                topic: topic.to_string(),
                read: scanned.records,
                expected,
                timeout,
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            // The end of a partition as it is now, at or past the high watermark taken above
            // (a transaction marker may sit at the last offset, so no record reaches it).
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => return Err(kafka_err("reading", e)),
            Some(Ok(m)) => {
                let Some(&end) = ends.get(&m.partition()) else { continue };
                if m.offset() >= end {
                    ends.remove(&m.partition());
                    continue;
                }
                scanned.records += 1;
                each(&mut state, &m);
                if m.offset() + 1 >= end {
                    ends.remove(&m.partition());
                }
            }
        }
    }
    Ok((scanned, state))
}

/// Reaching the end of a partition is how the reader knows it is done, not an error worth
/// librdkafka's default "Global error" log line.
struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}
