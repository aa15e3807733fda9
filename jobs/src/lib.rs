//! The `users_created` -> `created_users` job, on two engines that share one transform.
//!
//! - [`transform`]: the parse/validate/enrich SQL, defined once for Spark SQL and DataFusion.
//! - [`events`]: Kafka messages -> the Arrow batch the transform reads (local engine).
//! - [`spark`]: the Structured Streaming job submitted through Spark Connect.
//! - [`local`]: the same transform on DataFusion, Kafka to Cassandra without Spark.
//! - [`verify`]: reconciliation of the audit store, the topic and the table.
//! - [`dlq`]: the dead-letter topic: grouped listing and replay once the cause is fixed.
//! - [`scan`]: reading a whole topic once, without a consumer group.
//! - [`show`]: row count and a sample of the table.

pub mod dlq;
pub mod events;
pub mod local;
pub mod scan;
pub mod show;
pub mod spark;
pub mod transform;
pub mod verify;
