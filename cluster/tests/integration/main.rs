//! Integration tests of the foundation against the real services started by `pipeline cluster up`.
//! A service that is down makes its test fail; nothing is skipped.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

mod airflow;
mod airflow_ui;
mod clients;
mod compose;
mod lifecycle;
mod spark;
