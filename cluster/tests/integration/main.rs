//! Integration tests of the foundation against the real services started by `pipeline cluster up`.
//! A service that is down makes its test fail; nothing is skipped.

mod airflow;
mod airflow_ui;
mod clients;
mod compose;
mod lifecycle;
mod spark;
