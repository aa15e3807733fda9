//! The Spark engine: a Structured Streaming job submitted through Spark Connect.
//!
//! Kafka `users_created` -> registry header checked and stripped -> `from_avro`, one branch per
//! version of the subject registered at submit ([`schemas`]) -> the shared transform
//! ([`crate::transform`]) -> Cassandra through the spark-cassandra-connector; refused records ->
//! the dead-letter topic with a `reason` header (a second streaming query). Both queries have
//! their own checkpoint, so a stopped job resumes where it left off.
//!
//! - `job`: build, submit, stop; `record`: the query ids and the user's wish, kept next to the
//!   checkpoints; `status`: [`JobStatus`] from any process; `schemas`: versions and unknown ids.
//!
//! The queries live in a Spark Connect session with a fixed id (`job.session_id`), so that
//! `submit`, `jobs status` and `jobs stop` run from separate invocations see the same queries.
//! spark-connect-rs 0.0.2 can panic (e.g. `last_progress()` before the first batch); every call
//! runs in its own task, so a panic becomes a [`JobError`] instead of reaching the user.

mod job;
mod record;
pub mod schemas;
mod status;
mod status_client;
pub mod supervisor;

pub use job::{process_all_available, stop, submit, Submitted};
pub use record::{DesiredState, JobRecord, RecordedQuery};
pub use schemas::{known_schemas, KnownSchemas};
pub use status::{
    progress_line, progress_of, status, BatchProgress, JobState, JobStatus, PartitionOffset, QueryState, QueryStatus,
};
pub use status_client::StatusClient;

use std::future::Future;
use std::path::{Path, PathBuf};

use pipeline_core::registry::RegistryError;
use pipeline_core::Config;
use spark_connect_rs::errors::SparkError;
use spark_connect_rs::streaming::StreamingQuery;
use spark_connect_rs::{SparkSession, SparkSessionBuilder};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot reach Spark Connect at {url}: {reason} (is it running? `pipeline cluster up spark-connect`)")]
    Connect { url: String, reason: String },
    #[error("Spark Connect refused the token: {reason} ({token_file}; `pipeline cluster up` writes the token of the running server)")]
    Unauthenticated { reason: String, token_file: String },
    #[error("Spark Connect at {url} refused the call: {reason}")]
    Refused { url: String, reason: String },
    #[error("Spark rejected {what}: {reason}")]
    Spark { what: String, reason: String },
    #[error("the Spark client failed while {what} (internal error of spark-connect-rs: {reason})")]
    ClientPanic { what: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Table(#[from] crate::tables::TableError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {what} {path}: {reason}")]
    State { what: &'static str, path: PathBuf, reason: String },
}

/// Runs one client call in its own task: errors and panics both become [`JobError`].
pub(crate) async fn guarded<T, E, F>(what: &str, fut: F) -> Result<T, JobError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(JobError::Spark { what: what.to_string(), reason: first_lines(&e.to_string()) }),
        Err(join) => {
            let reason = match join.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
                Err(e) => e.to_string(),
            };
            Err(JobError::ClientPanic { what: what.to_string(), reason })
        }
    }
}

/// Panics raised inside spark-connect-rs are caught by [`guarded`] and reported as errors, so
/// their default "thread panicked" print is noise: this hook logs them at debug level and
/// leaves every other panic to the previous hook.
pub fn quiet_client_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("spark-connect-rs")) {
            tracing::debug!("spark-connect-rs panicked (handled): {info}");
        } else {
            previous(info);
        }
    }));
}

/// Spark's errors carry a JVM stack trace; the first lines say what went wrong.
pub(crate) fn first_lines(s: &str) -> String {
    s.lines().take(4).collect::<Vec<_>>().join(" | ")
}

/// The Spark Connect session of the job.
pub async fn connect(config: &Config) -> Result<SparkSession, JobError> {
    let url = pipeline_core::connect::connect_url(config, "pipeline", Some(&config.job.session_id.to_string()))
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    let builder_url = url.secret().to_string();
    let shown = url.to_string();
    let connecting = async move { SparkSessionBuilder::remote(&builder_url).build().await };
    let session = tokio::time::timeout(std::time::Duration::from_secs(30), guarded("connecting", connecting))
        .await
        .map_err(|_| JobError::Connect { url: shown.clone(), reason: "no answer within 30 s".into() })?;
    let session = session.map_err(|e| JobError::Connect { url: shown.clone(), reason: e.to_string() })?;
    // A cheap round trip: building the session does not contact the server. The client's
    // error keeps its type here, so that a refused token is told apart from other failures.
    let probe = session.clone();
    let answer =
        guarded("checking the connection", async move { Ok::<_, std::convert::Infallible>(probe.version().await) })
            .await
            .map_err(|e| JobError::Connect { url: shown.clone(), reason: e.to_string() })?;
    match answer {
        Ok(_) => Ok(session),
        Err(SparkError::Unauthenticated(reason)) => {
            Err(JobError::Unauthenticated { reason: first_lines(&reason), token_file: token_hint(config, &url) })
        }
        Err(SparkError::PermissionDenied(reason)) => {
            Err(JobError::Refused { url: shown, reason: first_lines(&reason) })
        }
        Err(e) => Err(JobError::Connect { url: shown, reason: first_lines(&e.to_string()) }),
    }
}

/// Where the token came from (or should have), for the refusal message.
fn token_hint(config: &Config, url: &pipeline_core::connect::ConnectUrl) -> String {
    let file = config.connect_token_file();
    if url.has_token() {
        format!("sent the token of {}", file.display())
    } else {
        format!("no token sent: {} does not exist", file.display())
    }
}

/// The job's running queries in its session.
pub async fn active_queries(spark: &SparkSession) -> Result<Vec<StreamingQuery>, JobError> {
    let manager = spark.streams();
    guarded("listing streaming queries", async move { manager.active().await }).await
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
