//! Shared helpers: configuration rooted at the workspace, unique names, bounded waiting.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline_core::Config;

/// The effective configuration (defaults + env), relative paths resolved at the workspace root.
pub fn config() -> Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    Config::load(None).expect("valid configuration").rebase(root)
}

/// A name no other test (or earlier run) uses: topics, keyspaces, tables, subjects.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn cassandra(config: &Config) -> scylla::client::session::Session {
    scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&config.cassandra.contact_points)
        .build()
        .await
        .expect("Cassandra must be up (pipeline cluster up)")
}
