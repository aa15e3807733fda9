//! End-to-end tests of the job engines against the real cluster: produce users, run the job,
//! compare Cassandra rows with an independent oracle.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

mod dlq;
mod local_engine;
mod local_faults;
mod local_runtime;
mod oracle;
mod schema_evolution;
mod spark_job;
mod supervisor;
mod verify;
