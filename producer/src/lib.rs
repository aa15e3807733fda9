//! The producer: users from the RandomUser API (or the synthetic source) are normalised,
//! audited in PostgreSQL (the transactional outbox) and published to Kafka with a registered
//! Avro schema.
//!
//! - [`source`]: the HTTP source (retries, timeouts, capped bodies) and the synthetic source.
//! - [`normalize`]: API record -> [`pipeline_core::model::UserEvent`]; credentials dropped.
//! - [`audit`]: PostgreSQL migrations, audit rows, the outbox and its recovery.
//! - [`publish`]: the idempotent Kafka producer; only delivered rows are marked published.
//! - [`run`]: the loop tying them together, with pacing, interval mode and shutdown.
//! - [`metrics`]: counters and latency histograms (Prometheus).

pub mod audit;
pub mod metrics;
pub mod normalize;
pub mod publish;
pub mod run;
pub mod source;

pub use run::{register_event_schema, run, ProduceOptions, ProducerError, Summary};
