//! What `submit` started, kept next to the checkpoints (`<job.checkpoint_dir>/job.json`).
//!
//! Spark Connect lists only *active* queries; a query that terminated is still known to the
//! server (its query cache keeps it for an hour) but only by its id and run id. Recording them
//! at submit lets `jobs status`, run from any process, report a failed query and its exception
//! instead of silently omitting it. The record also holds the state the user asked for
//! (`submit` = running, `jobs stop` = stopped), which a supervisor must respect.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pipeline_core::Config;
use serde::{Deserialize, Serialize};

use super::{absolute, JobError};

/// The state the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

/// One started query: the ids Spark Connect needs to find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedQuery {
    pub name: String,
    pub id: String,
    pub run_id: String,
}

/// The record of the job's last submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub desired: DesiredState,
    pub changed_at: DateTime<Utc>,
    /// The Connect session the queries run in.
    pub session_id: String,
    pub queries: Vec<RecordedQuery>,
    /// Registry ids of the subject's versions the job decodes.
    #[serde(default)]
    pub schema_ids: Vec<u32>,
}

impl JobRecord {
    pub fn path(config: &Config) -> PathBuf {
        absolute(&config.job.checkpoint_dir).join("job.json")
    }

    /// The record, or `None` when the job was never submitted with this checkpoint dir.
    pub fn load(config: &Config) -> Result<Option<JobRecord>, JobError> {
        let path = Self::path(config);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| JobError::State {
                what: "parse",
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(JobError::State { what: "read", path, reason: e.to_string() }),
        }
    }

    /// Writes the record atomically (a temporary file renamed over the old one).
    pub fn save(&self, config: &Config) -> Result<(), JobError> {
        let path = Self::path(config);
        write_atomically(&path, &serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// Marks the job stopped by the user, keeping the query ids (status still reports them).
    pub fn mark_stopped(config: &Config) -> Result<(), JobError> {
        if let Some(mut record) = Self::load(config)? {
            record.desired = DesiredState::Stopped;
            record.changed_at = Utc::now();
            record.save(config)?;
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let err = |what, e: std::io::Error| JobError::State { what, path: path.to_path_buf(), reason: e.to_string() };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("create the folder of", e))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| err("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| err("replace", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_stop_keeps_the_ids() {
        let mut config = Config::load(None).unwrap_or_else(|e| panic!("{e}"));
        config.job.checkpoint_dir = std::env::temp_dir().join(format!("record-test-{}", uuid::Uuid::new_v4()));
        assert_eq!(JobRecord::load(&config).ok().flatten(), None);
        let record = JobRecord {
            desired: DesiredState::Running,
            changed_at: Utc::now(),
            session_id: "s".into(),
            queries: vec![RecordedQuery { name: "q".into(), id: "i".into(), run_id: "r".into() }],
            schema_ids: vec![1, 2],
        };
        record.save(&config).unwrap_or_else(|e| panic!("{e}"));
        JobRecord::mark_stopped(&config).unwrap_or_else(|e| panic!("{e}"));
        let back = JobRecord::load(&config).ok().flatten().unwrap_or_else(|| panic!("no record"));
        assert_eq!(back.desired, DesiredState::Stopped);
        assert_eq!(back.queries, record.queries);
        let _ = std::fs::remove_dir_all(&config.job.checkpoint_dir);
    }
}
