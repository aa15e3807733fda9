//! The `[airflow]` section: Airflow schedules and watches the pipeline (its DAGs call the
//! `pipeline` binary). The launcher runs its api-server, scheduler and dag-processor.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AirflowConfig {
    /// false: `cluster up` (without named services) and `cluster status` leave Airflow out.
    pub enabled: bool,
    /// Port of the API server and UI on 127.0.0.1.
    pub port: u16,
    /// The DAG folder Airflow parses.
    pub dags_folder: PathBuf,
    /// Task slots of the LocalExecutor (one worker process, ~150 MB, per slot).
    pub parallelism: u32,
    /// Database of Airflow's metadata in the project's PostgreSQL (owned by `postgres.user`).
    pub database: String,
    /// `users_pipeline_health` when the Spark job is not running: `restart` or `fail`.
    pub on_job_stopped: OnJobStopped,
    /// Seconds records may take from the audit store to Cassandra before the health DAG fails.
    pub max_lag_secs: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnJobStopped {
    Restart,
    Fail,
}

impl AirflowConfig {
    /// Cross-field checks of the section.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.parallelism < 1 {
            errors.push("airflow.parallelism must be at least 1".into());
        }
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ident(&self.database) {
            errors.push(format!("airflow.database `{}` must be a lower-case SQL identifier", self.database));
        }
    }
}
