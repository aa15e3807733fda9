//! Where things live on disk, and the service config files compiled into the binary.
//!
//! The files under `conf/services/` are embedded and written to `<state>/conf/` at `up`, so the
//! launcher works from any directory, and `docker-compose.yml` mounts the very same files.
//! Ports and paths that depend on `conf/default.toml` are passed on each command line instead.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use pipeline_core::Config;

/// Service config files: (path under conf/services, content).
pub const SERVICE_FILES: &[(&str, &str)] = &[
    ("kafka/server.properties", include_str!("../../conf/services/kafka/server.properties")),
    ("kafka/log4j2.properties", include_str!("../../conf/services/kafka/log4j2.properties")),
    ("kafka/tools-log4j2.properties", include_str!("../../conf/services/kafka/tools-log4j2.properties")),
    ("apicurio/application.properties", include_str!("../../conf/services/apicurio/application.properties")),
    ("cassandra/cassandra.yaml", include_str!("../../conf/services/cassandra/cassandra.yaml")),
    ("cassandra/logback.xml", include_str!("../../conf/services/cassandra/logback.xml")),
    ("spark/spark-defaults.conf", include_str!("../../conf/services/spark/spark-defaults.conf")),
    ("spark/log4j2.properties", include_str!("../../conf/services/spark/log4j2.properties")),
];

/// Paths of the state folder (gitignored) and of the downloaded artifacts.
#[derive(Debug, Clone)]
pub struct Layout {
    pub state: PathBuf,
    pub artifacts: PathBuf,
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        Layout { state: absolute(&config.cluster.state_dir), artifacts: absolute(&config.cluster.artifacts_dir) }
    }

    pub fn log(&self, service: &str) -> PathBuf {
        self.state.join("logs").join(format!("{service}.log"))
    }

    pub fn pid_file(&self, service: &str) -> PathBuf {
        self.state.join("run").join(format!("{service}.pid"))
    }

    pub fn data(&self, service: &str) -> PathBuf {
        self.state.join("data").join(service)
    }

    pub fn conf(&self, file: &str) -> PathBuf {
        self.state.join("conf").join(file)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.state.join("run")
    }

    /// Writes the embedded service config files under `<state>/conf/`, with the one placeholder
    /// (`@SPARK_EXTRA_JARS_DIR@`, which docker-compose sets to its mount point) filled in.
    pub fn write_service_files(&self) -> io::Result<()> {
        for (name, content) in SERVICE_FILES {
            let path = self.conf(name);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            let content =
                content.replace("@SPARK_EXTRA_JARS_DIR@", &self.artifacts.join("spark/jars").to_string_lossy());
            if fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                fs::write(&path, content)?;
            }
        }
        Ok(())
    }
}

/// `path` resolved against the working directory (as relative config paths are).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}
