//! Cassandra sessions: every scylla session of the project is built by [`session`].

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::config::CassandraConfig;

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Cassandra at {}: {reason} (is it up? `pipeline cluster up cassandra`)", nodes.join(", "))]
pub struct ConnectError {
    pub nodes: Vec<String>,
    pub reason: String,
}

/// The builder with the configured contact points and timeouts (and, later, credentials and
/// TLS): for callers that need one more setting.
pub fn session_builder(c: &CassandraConfig) -> SessionBuilder {
    SessionBuilder::new().known_nodes(&c.contact_points).connection_timeout(Duration::from_millis(c.connect_timeout_ms))
}

/// A session on the configured contact points.
pub async fn session(c: &CassandraConfig) -> Result<Session, ConnectError> {
    session_builder(c)
        .build()
        .await
        .map_err(|e| ConnectError { nodes: c.contact_points.clone(), reason: e.to_string() })
}
