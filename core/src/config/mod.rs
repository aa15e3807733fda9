//! Layered configuration: embedded `conf/default.toml`, a user file, then environment variables.
//!
//! Every section uses `deny_unknown_fields`, so a typo is an error rather than a silently
//! ignored key. [`Config::load`] returns *all* problems at once: figment's deserialisation
//! errors plus the cross-field checks of [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod types;
mod validate;

pub use types::{Compatibility, Compression, HostPort, Interval, StartingOffsets};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod airflow;
pub use airflow::{AirflowConfig, OnJobStopped};

/// The documented defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../../conf/default.toml");

/// Environment prefix: `PIPELINE__KAFKA__TOPIC` sets `kafka.topic`.
pub const ENV_PREFIX: &str = "PIPELINE__";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub cassandra: CassandraConfig,
    pub spark: SparkConfig,
    pub producer: ProducerConfig,
    pub job: JobConfig,
    pub local: LocalConfig,
    pub dashboard: DashboardConfig,
    pub airflow: AirflowConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The interface every service binds to and every probe connects to.
    pub host: String,
    pub state_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    pub java_home: String,
    pub registry_java_home: String,
    pub startup_timeout_secs: u64,
    pub stop_timeout_secs: u64,
    pub memory: MemoryConfig,
    pub restart: RestartConfig,
    pub supervisor: SupervisorConfig,
}

/// What the supervisor does when a service process exits without `cluster down`
/// (compose's `restart: unless-stopped`, with backoff and a limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    pub enabled: bool,
    pub max_restarts: u32,
    pub window_secs: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// The supervisor process (`pipeline supervise`): service restarts and the Spark job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    pub enabled: bool,
    pub check_interval_ms: u64,
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub kafka_heap: String,
    pub registry_heap: String,
    pub cassandra_heap: String,
    pub spark_daemon_heap: String,
    pub spark_worker_cores: u32,
    pub spark_worker_memory: String,
    pub spark_driver_memory: String,
    pub spark_executor_memory: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub client_id: String,
    pub connect_timeout_ms: u64,
    /// Extra librdkafka properties for every client (security settings go here).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub controller_port: u16,
    pub topic: String,
    pub dead_letter_topic: String,
    pub partitions: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    pub subject: String,
    pub compatibility: Compatibility,
    pub management_port: u16,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password_file: PathBuf,
    /// Overrides `password_file` when set (normally from PIPELINE__POSTGRES__PASSWORD).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraConfig {
    pub contact_points: Vec<HostPort>,
    pub keyspace: String,
    pub table: String,
    pub replication_factor: u32,
    pub storage_port: u16,
    pub jmx_port: u16,
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkConfig {
    pub connect_url: String,
    pub connect_token_file: PathBuf,
    /// Overrides the token file when set (normally from PIPELINE__SPARK__CONNECT_TOKEN, as
    /// docker-compose does).
    #[serde(default, skip_serializing)]
    pub connect_token: Option<String>,
    pub master_url: String,
    pub master_ui_port: u16,
    pub worker_ui_port: u16,
    pub app_ui_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    pub source: SourceKind,
    pub batch_size: usize,
    pub rate: f64,
    pub interval_secs: u64,
    pub metrics_addr: SocketAddr,
    pub synthetic_seed: u64,
    pub randomuser: RandomUserApiConfig,
    pub kafka: ProducerKafkaConfig,
}

/// Where the producer's users come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    RandomUser,
    Synthetic,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::RandomUser => "randomuser",
            SourceKind::Synthetic => "synthetic",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomUserApiConfig {
    pub base_url: String,
    pub api_version: String,
    pub nat: String,
    pub seed: String,
    pub inc: String,
    pub exc: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_kib: usize,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub max_results_per_request: usize,
}

impl RandomUserApiConfig {
    /// Every problem of these settings, naming the keys (used by [`Config::validate`] and by
    /// the HTTP source when it is built from a hand-made config).
    pub fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            errors.push(format!(
                "producer.randomuser.base_url `{}` must start with http:// or https://, e.g. https://randomuser.me",
                self.base_url
            ));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            errors.push(format!(
                "producer.randomuser.backoff_base_ms ({}) exceeds producer.randomuser.backoff_max_ms ({})",
                self.backoff_base_ms, self.backoff_max_ms
            ));
        }
        for (key, value) in [
            ("max_body_kib", self.max_body_kib as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("max_results_per_request", self.max_results_per_request as u64),
        ] {
            if value == 0 {
                errors.push(format!("producer.randomuser.{key} must be positive"));
            }
        }
        errors
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn backoff_base(&self) -> Duration {
        Duration::from_millis(self.backoff_base_ms)
    }

    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_kib.saturating_mul(1024)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerKafkaConfig {
    pub compression: Compression,
    pub linger_ms: u64,
    pub batch_bytes: u64,
    pub message_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    pub query_name: String,
    pub dead_letter_query_name: String,
    pub checkpoint_dir: PathBuf,
    pub starting_offsets: StartingOffsets,
    pub max_offsets_per_trigger: u64,
    pub fail_on_data_loss: bool,
    pub trigger_interval: Interval,
    pub spark_kafka_bootstrap_servers: String,
    pub session_id: uuid::Uuid,
    /// Extra options of the Kafka source (`kafka.*` consumer settings), see conf/default.toml.
    #[serde(default)]
    pub kafka_options: BTreeMap<String, String>,
}

impl JobConfig {
    /// The bootstrap servers Spark's executors use.
    pub fn kafka_bootstrap<'a>(&'a self, kafka: &'a KafkaConfig) -> &'a str {
        if self.spark_kafka_bootstrap_servers.is_empty() {
            &kafka.bootstrap_servers
        } else {
            &self.spark_kafka_bootstrap_servers
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub group_id: String,
    pub batch_size: usize,
    pub batch_timeout_ms: u64,
    pub max_in_flight: usize,
    pub retry_backoff_base_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub request_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub metrics_addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    pub port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log: String,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every problem found while loading or checking the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

/// Where the user file comes from, in order of precedence.
pub fn default_user_file() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PIPELINE_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("pipeline.toml");
    local.exists().then_some(local)
}

impl Config {
    /// The figment with every layer, for callers that want to add their own.
    pub fn figment(user_file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = user_file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig.merge(Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Loads every layer and validates; all errors are returned together.
    pub fn load(user_file: Option<&Path>) -> Result<Config, ConfigErrors> {
        if let Some(path) = user_file {
            if !path.exists() {
                return Err(ConfigErrors(vec![format!("config file {} does not exist", path.display())]));
            }
        }
        // A value that does not parse stops serde at its first error. To still report every
        // problem at once, each bad key is replaced by its default and the extraction retried;
        // the cross-field checks then run on the repaired config. Any error fails the load.
        let mut figment = Config::figment(user_file);
        let defaults = Figment::from(Toml::string(DEFAULT_TOML));
        let mut errors = Vec::new();
        let mut repaired = std::collections::BTreeSet::new();
        loop {
            match figment.extract::<Config>() {
                Ok(config) => {
                    if let Err(ConfigErrors(more)) = config.validate() {
                        errors.extend(more);
                    }
                    return if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) };
                }
                Err(failed) => {
                    let mut progress = false;
                    for e in failed {
                        let key = e.path.join(".");
                        errors.push(e.to_string());
                        let default = defaults.find_value(&key).ok();
                        if let (Some(value), true) = (default, repaired.insert(key.clone())) {
                            figment = figment.merge(Serialized::default(&key, value));
                            progress = true;
                        }
                    }
                    if !progress {
                        return Err(ConfigErrors(errors));
                    }
                }
            }
        }
    }

    /// Resolves the relative paths of the configuration against `root` (tests and tools that
    /// run from another directory than the project root).
    pub fn rebase(mut self, root: &Path) -> Config {
        for path in [
            &mut self.cluster.state_dir,
            &mut self.cluster.artifacts_dir,
            &mut self.postgres.password_file,
            &mut self.job.checkpoint_dir,
            &mut self.airflow.dags_folder,
        ] {
            *path = root.join(&*path);
        }
        if !self.spark.connect_token_file.as_os_str().is_empty() {
            self.spark.connect_token_file = root.join(&self.spark.connect_token_file);
        }
        self
    }

    /// The Spark Connect token file: `spark.connect_token_file`, or by default
    /// `<cluster.state_dir>/secrets/spark-connect.token`.
    pub fn connect_token_file(&self) -> PathBuf {
        if self.spark.connect_token_file.as_os_str().is_empty() {
            self.cluster.state_dir.join("secrets").join("spark-connect.token")
        } else {
            self.spark.connect_token_file.clone()
        }
    }

    /// The embedded defaults alone, without user file or environment (tests, tools).
    pub fn defaults() -> Config {
        // The embedded file is covered by a unit test, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("embedded default config is valid")
    }
}

impl KafkaConfig {
    /// The first bootstrap server, which is where the local broker listens.
    pub fn first_broker(&self) -> Result<SocketAddr, String> {
        let first = self.bootstrap_servers.split(',').next().unwrap_or_default().trim();
        first.parse().map_err(|_| format!("kafka.bootstrap_servers: `{first}` is not an IP:port address"))
    }
}

impl PostgresConfig {
    /// The password: the override if set, else the content of `password_file`.
    pub fn password(&self) -> std::io::Result<String> {
        match &self.password {
            Some(p) => Ok(p.clone()),
            None => std::fs::read_to_string(&self.password_file).map(|s| s.trim().to_string()),
        }
    }
}

/// The port of `scheme://host:port/...`.
pub fn url_port(url: &str, scheme: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("`{url}` must start with {scheme}://"))?;
    let authority = rest.split(['/', ';']).next().unwrap_or_default();
    let port = authority.rsplit_once(':').map(|(_, p)| p).ok_or_else(|| format!("`{url}` has no port"))?;
    port.parse().map_err(|_| format!("`{url}` has an invalid port `{port}`"))
}

/// Size such as `512m` or `2g` in MiB.
pub fn parse_memory_mib(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let (digits, factor) = match v.chars().last()? {
        'g' => (&v[..v.len() - 1], 1024),
        'm' => (&v[..v.len() - 1], 1),
        _ => return None,
    };
    digits.parse::<u64>().ok().filter(|n| *n > 0).map(|n| n * factor)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn embedded_defaults_load_and_bind_loopback() {
        let c = Config::load(None).expect("defaults are valid");
        assert!(c.kafka.bootstrap_servers.starts_with("127.0.0.1:"));
        assert!(c.registry.url.starts_with("http://127.0.0.1:"));
        assert_eq!(c.postgres.host, "127.0.0.1");
        assert!(c.cassandra.contact_points.iter().all(|cp| cp.host == "127.0.0.1"));
        assert_eq!(c.spark.master_ui_port, 8083);
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("user.toml", "[kafka]\ntopic = \"from_file\"\npartitions = 6\n")?;
            jail.set_env("PIPELINE__KAFKA__TOPIC", "from_env");
            let c = Config::load(Some(Path::new("user.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.topic, "from_env");
            assert_eq!(c.kafka.partitions, 6);
            Ok(())
        });
    }

    #[test]
    fn every_error_is_reported_at_once() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                r#"
                [kafka]
                partitions = 0
                dead_letter_topic = "users_created"
                [registry]
                url = "ftp://nowhere"
                [spark]
                master_ui_port = 9092
                [cluster.memory]
                spark_executor_memory = "4g"
                [producer.kafka]
                compression = "brotli"
                [job]
                session_id = "not-a-uuid"
                trigger_interval = "2 fortnights"
                "#,
            )?;
            let err = Config::load(Some(Path::new("bad.toml"))).expect_err("invalid config");
            let text = err.to_string();
            for needle in [
                "kafka.partitions",
                "kafka.dead_letter_topic",
                "registry.url",
                "port 9092",
                "spark_executor_memory",
                "brotli",
                "job.session_id",
                "fortnights",
            ] {
                assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
            }
            assert_eq!(err.0.len(), 8, "{text}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[kafka]\ntopik = \"x\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).expect_err("unknown key");
            assert!(err.to_string().contains("topik"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory_mib("512m"), Some(512));
        assert_eq!(parse_memory_mib("2G"), Some(2048));
        assert_eq!(parse_memory_mib("12"), None);
        assert_eq!(parse_memory_mib("0g"), None);
    }

    #[test]
    fn url_ports_parse() {
        assert_eq!(url_port("sc://127.0.0.1:15002", "sc"), Ok(15002));
        assert_eq!(url_port("http://127.0.0.1:8081/apis/ccompat/v7", "http"), Ok(8081));
        assert!(url_port("http://127.0.0.1/x", "http").is_err());
    }
}
