//! The Cassandra tables both engines write, created from the record model's CQL before the
//! first write (the Spark job before it submits, the local engine on its writer's session).

use pipeline_core::config::{CassandraConfig, Config};
use pipeline_core::model::{cql_create_keyspace, cql_create_table, CreatedUserRow};
use scylla::client::session::Session;

/// The keyspace or table could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare Cassandra {keyspace}.{table}: {reason}")]
pub struct TableError {
    pub keyspace: String,
    pub table: String,
    pub reason: String,
}

/// Creates the keyspace and table if absent, on a session of its own.
pub async fn ensure_table(config: &Config) -> Result<(), TableError> {
    let c = &config.cassandra;
    let session = pipeline_core::clients::cassandra::session(c).await.map_err(|e| table_error(c, e.to_string()))?;
    ensure_table_in(&session, c).await
}

/// [`ensure_table`] on an open session (the local engine reuses its writer's).
pub async fn ensure_table_in(session: &Session, c: &CassandraConfig) -> Result<(), TableError> {
    for cql in [
        cql_create_keyspace(&c.keyspace, c.replication_factor),
        cql_create_table(&c.keyspace, &c.table, CreatedUserRow::FIELDS),
    ] {
        session.query_unpaged(cql, &[]).await.map_err(|e| table_error(c, e.to_string()))?;
    }
    session.await_schema_agreement().await.map_err(|e| table_error(c, format!("schema agreement: {e}")))?;
    Ok(())
}

fn table_error(c: &CassandraConfig, reason: String) -> TableError {
    TableError { keyspace: c.keyspace.clone(), table: c.table.clone(), reason }
}
