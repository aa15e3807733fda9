//! Cross-field checks of a loaded config: every problem is reported, naming the keys.

use std::collections::BTreeMap;

use super::{parse_memory_mib, url_port, Config, ConfigErrors};

impl Config {
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
        port("dashboard.port", Some(self.dashboard.port));
        port("airflow.port", Some(self.airflow.port));
        self.airflow.validate(&mut errors);
        port("cluster.supervisor.metrics_addr", Some(self.cluster.supervisor.metrics_addr.port()));
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

        port("postgres.port", Some(self.postgres.port));
        for (key, ident) in [("postgres.database", &self.postgres.database), ("postgres.user", &self.postgres.user)] {
            if !is_identifier(ident) {
                errors.push(format!("{key} `{ident}` must be a lower-case SQL identifier"));
            }
        }

        match self.cassandra.contact_points.first() {
            None => errors.push("cassandra.contact_points must name at least one host:port".into()),
            Some(cp) => port("cassandra.contact_points", Some(cp.port)),
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
        errors.extend(p.randomuser.problems());
        let j = &self.job;
        if j.query_name.is_empty() || j.query_name == j.dead_letter_query_name {
            errors.push(format!(
                "job.query_name (`{}`) must be set and differ from job.dead_letter_query_name (`{}`)",
                j.query_name, j.dead_letter_query_name
            ));
        }
        if j.max_offsets_per_trigger == 0 {
            errors.push("job.max_offsets_per_trigger must be at least 1".into());
        }
        let r = &self.cluster.restart;
        if r.backoff_base_ms == 0 || r.backoff_base_ms > r.backoff_max_ms {
            errors.push(format!(
                "cluster.restart.backoff_base_ms ({}) must be positive and at most cluster.restart.backoff_max_ms ({})",
                r.backoff_base_ms, r.backoff_max_ms
            ));
        }
        if self.cluster.supervisor.check_interval_ms == 0 {
            errors.push("cluster.supervisor.check_interval_ms must be positive".into());
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
        if l.metrics_addr == self.producer.metrics_addr {
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

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn tracing_subscriber_filter_ok(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter).map(|_| ()).map_err(|e| e.to_string())
}
