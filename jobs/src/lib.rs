//! The `users_created` -> `created_users` job, on two engines that share one transform.
//!
//! - [`transform`]: the parse/validate/enrich SQL, defined once for Spark SQL and DataFusion.
//! - [`spark`]: the Structured Streaming job submitted through Spark Connect.
//! - [`local`]: the same transform on DataFusion, Kafka to Cassandra without Spark (its
//!   [`local::events`] turns Kafka messages into the Arrow batch the transform reads).
//! - [`tables`]: the Cassandra keyspace and tables both engines write, created from the model.
//! - [`verify`]: reconciliation of the audit store, the topic and the table.
//! - [`dlq`]: the dead-letter topic: grouped listing and replay once the cause is fixed.
//! - [`scan`]: reading a whole topic once, without a consumer group.
//! - [`show`]: row count and a sample of the table.

pub mod dlq;
pub mod local;
pub mod scan;
pub mod show;
pub mod spark;
pub mod tables;
pub mod transform;
pub mod verify;
