//! Shared foundation of the pipeline.
//!
//! - [`model`]: the `users_created` event and the `created_users` row, defined once; Avro,
//!   Arrow, Spark DDL and CQL schemas derived from them.
//! - [`config`]: layered configuration (embedded defaults, user file, `PIPELINE__*` env vars)
//!   with every error reported at once.
//! - [`clients`]: the one door to Kafka and Cassandra (features `kafka`, `cassandra`).
//! - [`postgres`]: the connection as the pipeline's PostgreSQL role.
//! - [`registry`]: Confluent-compatible schema registry client and the wire format
//!   (magic byte, schema id, Avro payload).
//! - [`telemetry`]: tracing subscriber and Prometheus exporter.
//! - [`shutdown`]: the cancellation token every long-running `run` function takes.

pub mod clients;
pub mod config;
pub mod model;
pub mod postgres;
pub mod registry;
pub mod shutdown;
pub mod telemetry;

pub use config::Config;
