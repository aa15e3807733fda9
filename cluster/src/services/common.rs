//! Pieces several services share: the error type, HTTP/TCP probes, secrets, JDK discovery.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a service could not be prepared, launched or found ready. Each message says what failed
/// and, where there is one, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("{tool} could not run: {source}")]
    ToolNotRun { tool: String, source: io::Error },
    #[error("{tool} failed ({status}); see {}", log.display())]
    ToolFailed { tool: String, status: String, log: PathBuf },
    #[error("invalid configuration: {0} (see `pipeline config check`)")]
    Config(String),
    #[error("cannot read the secret {}: {source}; fix its permissions, or delete it to have a new one generated (clients holding the old one will then fail)", path.display())]
    Secret { path: PathBuf, source: io::Error },
    #[error("{0}")]
    MissingJava(String),
    /// The service runs but its protocol did not answer as expected (yet).
    #[error("{0}")]
    Probe(String),
    /// The service answered, but a set-up request (role, database, topic) failed.
    #[error("{what}: {reason}")]
    Request { what: String, reason: String },
}

impl ServiceError {
    pub fn io(action: &'static str, path: &Path, source: io::Error) -> ServiceError {
        ServiceError::Io { action, path: path.to_path_buf(), source }
    }

    pub fn probe(reason: impl ToString) -> ServiceError {
        ServiceError::Probe(reason.to_string())
    }

    pub fn request(what: impl Into<String>, reason: impl ToString) -> ServiceError {
        ServiceError::Request { what: what.into(), reason: reason.to_string() }
    }
}

/// Runs a set-up tool to completion with its output appended to the service's log.
pub(crate) fn run_tool(launch: &crate::process::Launch, tool: &str, log: &Path) -> Result<(), ServiceError> {
    let status =
        launch.run_to_end(log).map_err(|source| ServiceError::ToolNotRun { tool: tool.to_string(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(ServiceError::ToolFailed { tool: tool.to_string(), status: status.to_string(), log: log.to_path_buf() })
    }
}

/// A cheap first check before a driver is built (drivers log loudly on refused connections).
pub(crate) async fn tcp_open(host: &str, port: u16) -> Result<(), ServiceError> {
    tokio::net::TcpStream::connect((host, port))
        .await
        .map(|_| ())
        .map_err(|e| ServiceError::probe(format!("{host}:{port}: {e}")))
}

/// One HTTP client for every probe (they poll every 500 ms while services start).
pub(crate) fn http() -> Result<&'static reqwest::Client, ServiceError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().map_err(ServiceError::probe)?;
    Ok(CLIENT.get_or_init(|| client))
}

pub(crate) async fn http_ok(url: &str) -> Result<(), ServiceError> {
    let resp = http()?.get(url).send().await.map_err(ServiceError::probe)?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(ServiceError::probe(format!("GET {url} answered {}", resp.status())))
    }
}

pub(crate) async fn http_json(url: &str) -> Result<serde_json::Value, ServiceError> {
    let resp = http()?.get(url).send().await.map_err(ServiceError::probe)?;
    resp.json().await.map_err(|e| ServiceError::probe(format!("{url}: {e}")))
}

/// Reads a generated secret, or generates and stores one when the file does not exist yet.
/// Any other read error is an error: silently replacing a secret would lock out the clients
/// that hold the old one.
pub(crate) fn read_or_create_secret(path: &Path) -> Result<String, ServiceError> {
    match fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) => create_secret(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_secret(path),
        Err(source) => Err(ServiceError::Secret { path: path.to_path_buf(), source }),
    }
}

fn create_secret(path: &Path) -> Result<String, ServiceError> {
    use rand::distr::{Alphanumeric, SampleString};
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    write_secret(path, &secret)?;
    Ok(secret)
}

/// Writes a secret readable by its owner only, creating the folder.
pub(crate) fn write_secret(path: &Path, secret: &str) -> Result<(), ServiceError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ServiceError::io("create", dir, e))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ServiceError::io("write", path, e))?;
    f.write_all(secret.as_bytes()).map_err(|e| ServiceError::io("write", path, e))
}

/// The newest JDK under /usr/lib/jvm whose major version is at least `min`.
pub fn find_jdk(min: u32) -> Option<PathBuf> {
    fs::read_dir("/usr/lib/jvm")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bin/java").exists() && !p.is_symlink())
        .filter_map(|p| {
            let release = fs::read_to_string(p.join("release")).ok()?;
            let line = release.lines().find(|l| l.starts_with("JAVA_VERSION="))?;
            let version = line.trim_start_matches("JAVA_VERSION=").trim_matches('"');
            let major: u32 = version.split('.').next()?.parse().ok()?;
            (major >= min).then_some((major, p.join("bin/java")))
        })
        .max()
        .map(|(_, java)| java)
}

pub use super::spark::spark_select_one;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_generated_once_then_read_back() {
        let dir = std::env::temp_dir().join(format!("pipeline-secret-{}", std::process::id()));
        let path = dir.join("nested/s.secret");
        let first = read_or_create_secret(&path).expect("created");
        assert_eq!(first.len(), 32);
        assert_eq!(read_or_create_secret(&path).expect("read"), first);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unreadable_secret_is_an_error_not_a_new_secret() {
        // A directory where the file should be: reading fails with something other than NotFound.
        let dir = std::env::temp_dir().join(format!("pipeline-secret-dir-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let err = read_or_create_secret(&dir).expect_err("must not replace an unreadable secret");
        assert!(matches!(err, ServiceError::Secret { .. }), "{err}");
        let _ = fs::remove_dir_all(dir);
    }
}
