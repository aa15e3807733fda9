//! Layered configuration: embedded `conf/default.toml`, a user file, then environment variables.
//!
//! Every section uses `deny_unknown_fields`, so a typo is an error rather than a silently
//! ignored key. [`Config::load`] returns *all* problems at once: figment's deserialisation
//! errors plus the cross-field checks of [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod airflow;
pub use airflow::{AirflowConfig, OnJobStopped};

/// The documented defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../../conf/default.toml");

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
    pub compatibility: String,
    pub management_port: u16,
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
    pub contact_points: Vec<String>,
    pub keyspace: String,
    pub table: String,
    pub replication_factor: u32,
    pub storage_port: u16,
    pub jmx_port: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkConfig {
    pub connect_url: String,
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
    pub metrics_addr: String,
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
    pub max_body_mib: usize,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerKafkaConfig {
    pub compression: String,
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
    pub starting_offsets: String,
    pub max_offsets_per_trigger: u64,
    pub fail_on_data_loss: bool,
    pub trigger_interval: String,
    pub spark_kafka_bootstrap_servers: String,
    pub session_id: String,
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
    pub metrics_addr: String,
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
        let config: Config = Config::figment(user_file)
            .extract()
            .map_err(|errors| ConfigErrors(errors.into_iter().map(|e| e.to_string()).collect()))?;
        config.validate()?;
        Ok(config)
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
        self
    }

    /// The embedded defaults alone, without user file or environment (tests, tools).
    pub fn defaults() -> Config {
        // The embedded file is covered by a unit test, so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        Figment::from(Toml::string(DEFAULT_TOML)).extract().expect("embedded default config is valid")
    }

    /// Cross-field checks; every problem is reported, naming the keys involved.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut ports: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
        let mut port = |key: &'static str, p: Option<u16>| {
            if let Some(p) = p {
                ports.entry(p).or_default().push(key);
            }
        };

        match self.kafka.first_broker() {
            Ok(addr) => port("kafka.bootstrap_servers", Some(addr.port())),
            Err(e) => errors.push(e),
        }
        port("kafka.controller_port", Some(self.kafka.controller_port));
        port("registry.management_port", Some(self.registry.management_port));
        port("cassandra.storage_port", Some(self.cassandra.storage_port));
        port("cassandra.jmx_port", Some(self.cassandra.jmx_port));
        if self.cluster.host.parse::<std::net::IpAddr>().is_err() {
            errors.push(format!("cluster.host `{}` is not an IP address", self.cluster.host));
        }
        if self.kafka.partitions < 1 {
            errors.push(format!("kafka.partitions must be at least 1, got {}", self.kafka.partitions));
        }
        if self.kafka.topic == self.kafka.dead_letter_topic {
            errors.push(format!(
                "kafka.dead_letter_topic ({}) must differ from kafka.topic ({})",
                self.kafka.dead_letter_topic, self.kafka.topic
            ));
        }
        for (key, name) in
            [("kafka.topic", &self.kafka.topic), ("kafka.dead_letter_topic", &self.kafka.dead_letter_topic)]
        {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                errors.push(format!("{key} `{name}` is not a valid Kafka topic name (letters, digits, . _ -)"));
            }
        }

        match url_port(&self.registry.url, "http") {
            Ok(p) => port("registry.url", Some(p)),
            Err(e) => errors.push(format!("registry.url: {e}")),
        }
        const LEVELS: &[&str] =
            &["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"];
        if !LEVELS.contains(&self.registry.compatibility.as_str()) {
            errors.push(format!(
                "registry.compatibility `{}` is not one of {}",
                self.registry.compatibility,
                LEVELS.join(", ")
            ));
        }

        port("postgres.port", Some(self.postgres.port));
        for (key, ident) in [("postgres.database", &self.postgres.database), ("postgres.user", &self.postgres.user)] {
            if !is_identifier(ident) {
                errors.push(format!("{key} `{ident}` must be a lower-case SQL identifier"));
            }
        }

        match self.cassandra.contact_points.first() {
            None => errors.push("cassandra.contact_points must name at least one host:port".into()),
            Some(cp) => match cp.parse::<SocketAddr>() {
                Ok(a) => port("cassandra.contact_points", Some(a.port())),
                Err(_) => errors.push(format!("cassandra.contact_points: `{cp}` is not an IP:port address")),
            },
        }
        for (key, ident) in
            [("cassandra.keyspace", &self.cassandra.keyspace), ("cassandra.table", &self.cassandra.table)]
        {
            if !is_identifier(ident) {
                errors.push(format!("{key} `{ident}` must be a lower-case CQL identifier"));
            }
        }
        if self.cassandra.replication_factor == 0 {
            errors.push("cassandra.replication_factor must be at least 1".into());
        }

        match url_port(&self.spark.connect_url, "sc") {
            Ok(p) => port("spark.connect_url", Some(p)),
            Err(e) => errors.push(format!("spark.connect_url: {e}")),
        }
        match url_port(&self.spark.master_url, "spark") {
            Ok(p) => port("spark.master_url", Some(p)),
            Err(e) => errors.push(format!("spark.master_url: {e}")),
        }
        port("spark.master_ui_port", Some(self.spark.master_ui_port));
        port("spark.worker_ui_port", Some(self.spark.worker_ui_port));
        port("spark.app_ui_port", Some(self.spark.app_ui_port));
        port("airflow.port", Some(self.airflow.port));
        self.airflow.validate(&mut errors);

        for (p, keys) in &ports {
            if keys.len() > 1 {
                errors.push(format!("port {p} is used by several services: {}", keys.join(", ")));
            }
        }

        let m = &self.cluster.memory;
        for (key, value) in [
            ("cluster.memory.kafka_heap", &m.kafka_heap),
            ("cluster.memory.registry_heap", &m.registry_heap),
            ("cluster.memory.cassandra_heap", &m.cassandra_heap),
            ("cluster.memory.spark_daemon_heap", &m.spark_daemon_heap),
            ("cluster.memory.spark_worker_memory", &m.spark_worker_memory),
            ("cluster.memory.spark_driver_memory", &m.spark_driver_memory),
            ("cluster.memory.spark_executor_memory", &m.spark_executor_memory),
        ] {
            if parse_memory_mib(value).is_none() {
                errors.push(format!("{key} `{value}` is not a JVM size such as 512m or 1g"));
            }
        }
        if let (Some(exec), Some(worker)) =
            (parse_memory_mib(&m.spark_executor_memory), parse_memory_mib(&m.spark_worker_memory))
        {
            if exec > worker {
                errors.push(format!(
                    "cluster.memory.spark_executor_memory ({}) exceeds cluster.memory.spark_worker_memory ({}): no executor could start",
                    m.spark_executor_memory, m.spark_worker_memory
                ));
            }
        }
        if m.spark_worker_cores == 0 {
            errors.push("cluster.memory.spark_worker_cores must be at least 1".into());
        }
        if self.cluster.startup_timeout_secs == 0 {
            errors.push("cluster.startup_timeout_secs must be positive".into());
        }
        let p = &self.producer;
        if p.batch_size == 0 || p.batch_size > 100_000 {
            errors.push(format!("producer.batch_size must be between 1 and 100000, got {}", p.batch_size));
        }
        if !(p.rate >= 0.0 && p.rate.is_finite()) {
            errors.push(format!("producer.rate must be 0 (unlimited) or a positive number, got {}", p.rate));
        }
        if p.interval_secs == 0 {
            errors.push("producer.interval_secs must be at least 1".into());
        }
        if p.metrics_addr.parse::<SocketAddr>().is_err() {
            errors.push(format!("producer.metrics_addr `{}` is not an IP:port address", p.metrics_addr));
        }
        let api = &p.randomuser;
        if !(api.base_url.starts_with("http://") || api.base_url.starts_with("https://")) {
            errors.push(format!("producer.randomuser.base_url `{}` must start with http:// or https://", api.base_url));
        }
        if api.backoff_base_ms > api.backoff_max_ms {
            errors.push(format!(
                "producer.randomuser.backoff_base_ms ({}) exceeds producer.randomuser.backoff_max_ms ({})",
                api.backoff_base_ms, api.backoff_max_ms
            ));
        }
        if api.max_body_mib == 0 || api.request_timeout_ms == 0 || api.connect_timeout_ms == 0 {
            errors.push("producer.randomuser: max_body_mib and the timeouts must be positive".into());
        }
        if !["none", "gzip", "snappy", "lz4"].contains(&p.kafka.compression.as_str()) {
            errors.push(format!(
                "producer.kafka.compression `{}` is not one of none, gzip, snappy, lz4",
                p.kafka.compression
            ));
        }
        let j = &self.job;
        if j.query_name.is_empty() || j.query_name == j.dead_letter_query_name {
            errors.push(format!(
                "job.query_name (`{}`) must be set and differ from job.dead_letter_query_name (`{}`)",
                j.query_name, j.dead_letter_query_name
            ));
        }
        if !["earliest", "latest"].contains(&j.starting_offsets.as_str()) && !j.starting_offsets.starts_with('{') {
            errors.push(format!(
                "job.starting_offsets `{}` must be earliest, latest or a JSON offsets object",
                j.starting_offsets
            ));
        }
        if j.max_offsets_per_trigger == 0 {
            errors.push("job.max_offsets_per_trigger must be at least 1".into());
        }
        if !is_spark_interval(&j.trigger_interval) {
            errors.push(format!(
                "job.trigger_interval `{}` is not an interval such as \"2 seconds\"",
                j.trigger_interval
            ));
        }
        if !is_uuid(&j.session_id) {
            errors.push(format!("job.session_id `{}` must be a UUID", j.session_id));
        }
        let l = &self.local;
        if l.group_id.is_empty() {
            errors.push("local.group_id must not be empty".into());
        }
        if l.batch_size == 0 || l.max_in_flight == 0 || l.batch_timeout_ms == 0 {
            errors.push("local.batch_size, local.batch_timeout_ms and local.max_in_flight must be positive".into());
        }
        if l.retry_backoff_base_ms == 0 || l.retry_backoff_base_ms > l.retry_backoff_max_ms {
            errors.push(format!(
                "local.retry_backoff_base_ms ({}) must be positive and at most local.retry_backoff_max_ms ({})",
                l.retry_backoff_base_ms, l.retry_backoff_max_ms
            ));
        }
        if l.metrics_addr.parse::<SocketAddr>().is_err() {
            errors.push(format!("local.metrics_addr `{}` is not an IP:port address", l.metrics_addr));
        } else if l.metrics_addr == self.producer.metrics_addr {
            errors.push(format!(
                "local.metrics_addr and producer.metrics_addr are both {}: they may run at the same time",
                l.metrics_addr
            ));
        }
        if let Err(e) = tracing_subscriber_filter_ok(&self.telemetry.log) {
            errors.push(format!("telemetry.log: {e}"));
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
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

/// "N unit" with a unit Spark understands.
fn is_spark_interval(s: &str) -> bool {
    let mut parts = s.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    const UNITS: &[&str] = &["millisecond", "milliseconds", "second", "seconds", "minute", "minutes", "hour", "hours"];
    n.parse::<u64>().is_ok() && UNITS.contains(&unit)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn tracing_subscriber_filter_ok(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter).map(|_| ()).map_err(|e| e.to_string())
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
        assert!(c.cassandra.contact_points.iter().all(|cp| cp.starts_with("127.0.0.1:")));
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
                "#,
            )?;
            let err = Config::load(Some(Path::new("bad.toml"))).expect_err("invalid config");
            let text = err.to_string();
            for needle in
                ["kafka.partitions", "kafka.dead_letter_topic", "registry.url", "port 9092", "spark_executor_memory"]
            {
                assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
            }
            assert_eq!(err.0.len(), 5, "{text}");
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
