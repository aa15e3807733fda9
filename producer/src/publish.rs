//! Kafka publishing: idempotent producer, `acks=all`, compression and batching from config.
//!
//! A row counts as published only when its delivery report says so; failed deliveries are
//! returned to the caller (they stay unpublished in the outbox and are retried on the next
//! run), never dropped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use pipeline_core::clients::kafka::client_config;
use pipeline_core::config::{KafkaConfig, ProducerKafkaConfig};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::audit::{OutboxRow, Published};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot create the Kafka producer for {bootstrap}: {source}")]
    Create { bootstrap: String, source: KafkaError },
    #[error("{failed} of {total} deliveries to `{topic}` failed; first error: {first} (the rows stay in the outbox and are published on the next run)")]
    Deliveries { topic: String, failed: usize, total: usize, first: String },
}

/// The producer of `users_created`.
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    queue_timeout: Duration,
}

/// The outcome of publishing one batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub published: Vec<Published>,
    pub failed: Vec<(i64, String)>,
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig, tuning: &ProducerKafkaConfig) -> Result<Publisher, PublishError> {
        let producer: FutureProducer = client_config(kafka, "producer")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &tuning.compression)
            .set("linger.ms", tuning.linger_ms.to_string())
            .set("batch.size", tuning.batch_bytes.to_string())
            .set("message.timeout.ms", tuning.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "200000")
            .create()
            .map_err(|source| PublishError::Create { bootstrap: kafka.bootstrap_servers.clone(), source })?;
        Ok(Publisher {
            producer,
            topic: kafka.topic.clone(),
            queue_timeout: Duration::from_millis(tuning.message_timeout_ms),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes rows (key = user id, value = framed Avro, headers `source` and `produced_at`)
    /// and waits for every delivery report.
    pub async fn publish(&self, rows: &[OutboxRow], produced_at: DateTime<Utc>) -> BatchOutcome {
        let produced = produced_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let sends = rows.iter().map(|row| {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "source", value: Some(row.source.as_str()) })
                .insert(Header { key: "produced_at", value: Some(produced.as_str()) });
            let record =
                FutureRecord::to(&self.topic).key(row.key.as_str()).payload(row.value.as_slice()).headers(headers);
            // Waits for queue space (backpressure) up to the timeout, then for the delivery.
            async move { (row.seq, self.producer.send(record, Timeout::After(self.queue_timeout)).await) }
        });
        let mut outcome = BatchOutcome::default();
        for (seq, result) in join_all(sends).await {
            match result {
                Ok(d) => outcome.published.push(Published { seq, partition: d.partition, offset: d.offset }),
                Err((e, _)) => outcome.failed.push((seq, e.to_string())),
            }
        }
        outcome
    }

    /// Waits for in-flight messages (on shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

impl BatchOutcome {
    /// An error describing the failures, if any.
    pub fn error(&self, topic: &str, total: usize) -> Option<PublishError> {
        self.failed.first().map(|(_, first)| PublishError::Deliveries {
            topic: topic.to_string(),
            failed: self.failed.len(),
            total,
            first: first.clone(),
        })
    }
}
