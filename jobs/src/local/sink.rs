//! Cassandra writes: one prepared `INSERT`, bounded concurrency, retries with backoff until
//! the write succeeds or the engine shuts down (a row is never skipped).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, TimestampMicrosecondType};
use futures::stream::{self, TryStreamExt};
use pipeline_core::config::{CassandraConfig, LocalConfig};
use pipeline_core::model::{cql_insert, CreatedUserRow, FieldType};
use pipeline_core::shutdown::CancellationToken;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to Cassandra at {nodes:?}: {reason} (is it running? `pipeline cluster up cassandra`)")]
    Connect { nodes: Vec<String>, reason: String },
    #[error("cannot create or prepare the insert into {table}: {reason}")]
    Prepare { table: String, reason: String },
    #[error("column `{column}` of the transform output: {reason}")]
    Column { column: &'static str, reason: String },
    #[error("shutting down with writes still failing: the batch is not committed and will be re-read")]
    ShuttingDown,
}

/// One row as CQL values, in [`CreatedUserRow::FIELDS`] order.
pub type CqlRow = Vec<Option<CqlValue>>;

/// Converts the transform's output (valid rows only) into CQL rows.
pub fn to_cql_rows(batch: &RecordBatch) -> Result<Vec<CqlRow>, SinkError> {
    let mut rows: Vec<CqlRow> =
        (0..batch.num_rows()).map(|_| Vec::with_capacity(CreatedUserRow::FIELDS.len())).collect();
    for f in CreatedUserRow::FIELDS {
        let err = |reason: String| SinkError::Column { column: f.name, reason };
        let raw = batch.column_by_name(f.name).ok_or_else(|| err("missing".into()))?;
        // Normalise DataFusion's types (e.g. now() in nanoseconds) to the model's.
        let col = arrow::compute::cast(raw, &f.ty.arrow()).map_err(|e| err(e.to_string()))?;
        for (i, row) in rows.iter_mut().enumerate() {
            if col.is_null(i) {
                row.push(None);
                continue;
            }
            row.push(Some(match f.ty {
                FieldType::Uuid => {
                    let text = col.as_string::<i32>().value(i);
                    CqlValue::Uuid(text.parse().map_err(|e| err(format!("`{text}` is not a UUID: {e}")))?)
                }
                FieldType::Text => CqlValue::Text(col.as_string::<i32>().value(i).to_string()),
                FieldType::Int => CqlValue::Int(col.as_primitive::<Int32Type>().value(i)),
                FieldType::Double => CqlValue::Double(col.as_primitive::<Float64Type>().value(i)),
                FieldType::Timestamp => CqlValue::Timestamp(CqlTimestamp(
                    col.as_primitive::<TimestampMicrosecondType>().value(i).div_euclid(1000),
                )),
            }));
        }
    }
    Ok(rows)
}

/// The writer of `created_users` rows.
pub struct CassandraSink {
    session: Arc<Session>,
    insert: PreparedStatement,
    max_in_flight: usize,
    /// Shared by every batch being written: at most `max_in_flight` requests at once overall.
    permits: Arc<Semaphore>,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl CassandraSink {
    pub async fn connect(cassandra: &CassandraConfig, local: &LocalConfig) -> Result<CassandraSink, SinkError> {
        let session = pipeline_core::clients::cassandra::session(cassandra)
            .await
            .map_err(|e| SinkError::Connect { nodes: e.nodes, reason: e.reason })?;
        let table = format!("{}.{}", cassandra.keyspace, cassandra.table);
        crate::tables::ensure_table_in(&session, cassandra)
            .await
            .map_err(|e| SinkError::Prepare { table: table.clone(), reason: e.to_string() })?;
        let mut insert = session
            .prepare(cql_insert(&cassandra.keyspace, &cassandra.table, CreatedUserRow::FIELDS))
            .await
            .map_err(|e| SinkError::Prepare { table, reason: e.to_string() })?;
        insert.set_request_timeout(Some(Duration::from_millis(local.request_timeout_ms)));
        // Upserts by primary key: retrying a write that may have landed is harmless.
        insert.set_is_idempotent(true);
        Ok(CassandraSink {
            session: Arc::new(session),
            insert,
            max_in_flight: local.max_in_flight,
            permits: Arc::new(Semaphore::new(local.max_in_flight.max(1))),
            backoff_base: Duration::from_millis(local.retry_backoff_base_ms),
            backoff_max: Duration::from_millis(local.retry_backoff_max_ms),
        })
    }

    /// Writes every row, at most `max_in_flight` at a time across every batch being written; a
    /// failed write is retried with backoff (its permit released meanwhile) until it succeeds.
    /// Returns once all rows are written, or an error on shutdown.
    pub async fn write(&self, rows: Vec<CqlRow>, shutdown: &CancellationToken) -> Result<(), SinkError> {
        stream::iter(rows.into_iter().map(Ok))
            .try_for_each_concurrent(self.max_in_flight, |row| self.write_one(row, shutdown))
            .await
    }

    async fn write_one(&self, row: CqlRow, shutdown: &CancellationToken) -> Result<(), SinkError> {
        let mut backoff = self.backoff_base;
        let mut attempt: u64 = 0;
        loop {
            attempt += 1;
            let outcome = {
                let _permit = self.permits.acquire().await.map_err(|_| SinkError::ShuttingDown)?;
                self.session.execute_unpaged(&self.insert, &row).await
            };
            match outcome {
                Ok(_) => return Ok(()),
                Err(e) => {
                    crate::local::metrics::write_retry();
                    // Up to max_in_flight writes retry at once during an outage: log sparingly.
                    if attempt == 1 || attempt.is_multiple_of(20) {
                        tracing::warn!(attempt, "Cassandra write failed, retrying in {backoff:?}: {e}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return Err(SinkError::ShuttingDown),
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                }
            }
        }
    }
}
