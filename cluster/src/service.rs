//! The services of the local cluster: how each one is prepared, launched and probed.
//!
//! Readiness is always checked by protocol (a Kafka metadata request, a CQL query, an HTTP
//! call, a SQL query through Spark Connect, `SELECT 1` on PostgreSQL), never by sleeping.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use pipeline_core::config::url_port;
use pipeline_core::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::layout::Layout;
use crate::process::Launch;

/// One service of the local cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Postgres,
    Kafka,
    Registry,
    Cassandra,
    SparkMaster,
    SparkWorker,
    SparkConnect,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL.iter().copied().find(|svc| svc.name() == s).ok_or_else(|| {
            format!(
                "unknown service `{s}`; one of: {}",
                Service::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Ready-check failure: the service is not (yet) answering.
pub type ProbeResult = Result<(), String>;

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 7] = [
        Service::Postgres,
        Service::Kafka,
        Service::Registry,
        Service::Cassandra,
        Service::SparkMaster,
        Service::SparkWorker,
        Service::SparkConnect,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Kafka => "kafka",
            Service::Registry => "registry",
            Service::Cassandra => "cassandra",
            Service::SparkMaster => "spark-master",
            Service::SparkWorker => "spark-worker",
            Service::SparkConnect => "spark-connect",
        }
    }

    /// The service that must be ready before this one starts.
    pub fn depends_on(self) -> Option<Service> {
        match self {
            Service::SparkWorker => Some(Service::SparkMaster),
            Service::SparkConnect => Some(Service::SparkWorker),
            _ => None,
        }
    }

    /// TCP ports the service listens on, all on 127.0.0.1.
    pub fn ports(self, config: &Config) -> Vec<u16> {
        let first = |r: Result<u16, String>| r.into_iter().collect::<Vec<_>>();
        match self {
            Service::Postgres => vec![config.postgres.port],
            Service::Kafka => {
                let mut p = first(config.kafka.first_broker().map(|a| a.port()));
                p.push(config.kafka.controller_port);
                p
            }
            Service::Registry => {
                let mut p = first(url_port(&config.registry.url, "http"));
                p.push(REGISTRY_MANAGEMENT_PORT);
                p
            }
            Service::Cassandra => {
                let mut p = first(cassandra_port(config));
                p.extend([CASSANDRA_STORAGE_PORT, CASSANDRA_JMX_PORT]);
                p
            }
            Service::SparkMaster => {
                let mut p = first(url_port(&config.spark.master_url, "spark"));
                p.push(config.spark.master_ui_port);
                p
            }
            Service::SparkWorker => vec![config.spark.worker_ui_port],
            Service::SparkConnect => {
                let mut p = first(url_port(&config.spark.connect_url, "sc"));
                p.push(config.spark.app_ui_port);
                p
            }
        }
    }

    /// Web UI (or HTTP API) of the service, if it has one.
    pub fn ui_url(self, config: &Config) -> Option<String> {
        match self {
            Service::Registry => Some(config.registry.url.clone()),
            Service::SparkMaster => Some(format!("http://127.0.0.1:{}", config.spark.master_ui_port)),
            Service::SparkWorker => Some(format!("http://127.0.0.1:{}", config.spark.worker_ui_port)),
            Service::SparkConnect => Some(format!("http://127.0.0.1:{}", config.spark.app_ui_port)),
            _ => None,
        }
    }
}

fn cassandra_port(config: &Config) -> Result<u16, String> {
    let cp = config.cassandra.contact_points.first().ok_or("no cassandra contact point")?;
    cp.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| format!("bad contact point {cp}"))
}

/// Everything needed to prepare, launch and probe the services of one configuration.
pub struct Services<'a> {
    pub config: &'a Config,
    pub layout: &'a Layout,
}

impl Services<'_> {
    fn java(&self) -> PathBuf {
        let home = if self.config.cluster.java_home.is_empty() {
            std::env::var("JAVA_HOME").unwrap_or_default()
        } else {
            self.config.cluster.java_home.clone()
        };
        if home.is_empty() {
            PathBuf::from("java")
        } else {
            PathBuf::from(home).join("bin").join("java")
        }
    }

    /// Apicurio Registry 3 needs Java 21+: `cluster.registry_java_home`, else the newest JDK
    /// of at least 21 under /usr/lib/jvm, else the default `java` if it is new enough.
    fn registry_java(&self) -> Result<PathBuf, String> {
        if !self.config.cluster.registry_java_home.is_empty() {
            return Ok(PathBuf::from(&self.config.cluster.registry_java_home).join("bin/java"));
        }
        find_jdk(REGISTRY_MIN_JAVA).ok_or_else(|| {
            format!(
                "the schema registry (Apicurio 3) needs Java {REGISTRY_MIN_JAVA} or newer and none was found under \
                 /usr/lib/jvm; install one (e.g. a Temurin 21/25 JDK) or set cluster.registry_java_home"
            )
        })
    }

    fn artifact(&self, rel: &str) -> PathBuf {
        self.layout.artifacts.join(rel)
    }

    fn path(&self, p: PathBuf) -> String {
        p.to_string_lossy().into_owned()
    }

    /// Artifacts a service needs; a missing one means `make deps` has not run.
    pub fn required_artifact(&self, service: Service) -> PathBuf {
        match service {
            Service::Postgres => postgres_bin("postgres"),
            Service::Kafka => self.artifact("kafka/lib"),
            Service::Registry => self.artifact("apicurio/quarkus-run.jar"),
            Service::Cassandra => self.artifact("cassandra/lib"),
            Service::SparkMaster | Service::SparkWorker => self.spark_home().join("bin/spark-class"),
            Service::SparkConnect => crate::connect_auth::interceptor_jar(self.layout),
        }
    }

    fn spark_home(&self) -> PathBuf {
        self.artifact("spark/py/pyspark")
    }

    /// One-time set-up before the first start (idempotent).
    pub fn prepare(&self, service: Service) -> Result<(), String> {
        let data = self.layout.data(service.name());
        fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        match service {
            Service::Postgres => self.prepare_postgres(),
            Service::Kafka => self.prepare_kafka(),
            Service::SparkConnect => crate::connect_auth::ensure_token(self.config).map(|_| ()),
            _ => Ok(()),
        }
    }

    fn prepare_postgres(&self) -> Result<(), String> {
        let data = self.layout.data("postgres");
        let socket_dir = self.layout.run_dir().join("postgres");
        fs::create_dir_all(&socket_dir).map_err(|e| e.to_string())?;
        chown_to_postgres(&[&data, &socket_dir])?;
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        let status = Launch {
            user: Some("postgres".into()),
            ..Launch::new(postgres_bin("initdb")).args([
                "-D".to_string(),
                self.path(data),
                "-U".into(),
                "postgres".into(),
                "--auth-local=trust".into(),
                "--auth-host=scram-sha-256".into(),
                "-E".into(),
                "UTF8".into(),
                "--no-locale".into(),
            ])
        }
        .run_to_end(&self.layout.log("postgres"))
        .map_err(|e| format!("initdb could not run: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("initdb failed ({status}); see {}", self.layout.log("postgres").display()))
        }
    }

    /// The shared `server.properties` plus the settings that come from `conf/default.toml`
    /// (ports, data folder), appended so that they win. Used by both format and run, since
    /// the storage tool has no `--override`.
    fn write_kafka_properties(&self) -> Result<(), String> {
        let cfg = self.config;
        let broker = cfg.kafka.first_broker()?;
        let ctrl = cfg.kafka.controller_port;
        let base = fs::read_to_string(self.layout.conf("kafka/server.properties")).map_err(|e| e.to_string())?;
        let local = format!(
            "{base}\n# ---- written by `pipeline cluster up` from conf/default.toml (these win) ----\n\
             log.dirs={}\nlisteners=PLAINTEXT://{broker},CONTROLLER://127.0.0.1:{ctrl}\n\
             advertised.listeners=PLAINTEXT://{broker}\ncontroller.quorum.voters=1@127.0.0.1:{ctrl}\n\
             num.partitions={}\n",
            self.path(self.layout.data("kafka")),
            cfg.kafka.partitions
        );
        fs::write(self.layout.conf(KAFKA_LOCAL_PROPERTIES), local).map_err(|e| e.to_string())
    }

    fn prepare_kafka(&self) -> Result<(), String> {
        self.write_kafka_properties()?;
        let data = self.layout.data("kafka");
        if data.join("meta.properties").exists() {
            return Ok(());
        }
        let cluster_id = kafka_cluster_id();
        let status = self
            .kafka_java("kafka/tools-log4j2.properties")
            .args(["kafka.tools.StorageTool", "format", "--ignore-formatted", "--cluster-id", &cluster_id, "--config"])
            .arg(self.path(self.layout.conf(KAFKA_LOCAL_PROPERTIES)))
            .run_to_end(&self.layout.log("kafka"))
            .map_err(|e| format!("kafka storage format could not run: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kafka storage format failed ({status}); see {}", self.layout.log("kafka").display()))
        }
    }

    fn kafka_java(&self, log4j: &str) -> Launch {
        let heap = &self.config.cluster.memory.kafka_heap;
        Launch::new(self.java()).args([
            format!("-Xms{heap}"),
            format!("-Xmx{heap}"),
            "-XX:+UseG1GC".into(),
            "-Dpipeline.service=kafka".into(),
            format!("-Dlog4j2.configurationFile={}", self.path(self.layout.conf(log4j))),
            "-cp".into(),
            format!("{}/*", self.path(self.artifact("kafka/lib"))),
        ])
    }

    /// The long-running process of a service.
    pub fn launch(&self, service: Service) -> Result<Launch, String> {
        let cfg = self.config;
        let mem = &cfg.cluster.memory;
        let launch = match service {
            Service::Postgres => Launch {
                user: Some("postgres".into()),
                ..Launch::new(postgres_bin("postgres")).args([
                    "-D".to_string(),
                    self.path(self.layout.data("postgres")),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-c".into(),
                    format!("port={}", cfg.postgres.port),
                    "-c".into(),
                    format!("unix_socket_directories={}", self.path(self.layout.run_dir().join("postgres"))),
                    "-c".into(),
                    "shared_buffers=128MB".into(),
                    "-c".into(),
                    "max_connections=100".into(),
                ])
            },
            Service::Kafka => self
                .kafka_java("kafka/log4j2.properties")
                .arg("kafka.Kafka")
                .arg(self.path(self.layout.conf(KAFKA_LOCAL_PROPERTIES))),
            Service::Registry => {
                let port = url_port(&cfg.registry.url, "http")?;
                Launch::new(self.registry_java()?).args([
                    format!("-Xms{}", mem.registry_heap),
                    format!("-Xmx{}", mem.registry_heap),
                    "-Dpipeline.service=registry".into(),
                    format!(
                        "-Dquarkus.config.locations={}",
                        self.path(self.layout.conf("apicurio/application.properties"))
                    ),
                    "-XX:+UseSerialGC".into(),
                    format!("-Dquarkus.http.port={port}"),
                    format!("-Dquarkus.management.port={REGISTRY_MANAGEMENT_PORT}"),
                    "-Dquarkus.http.host=127.0.0.1".into(),
                    "-jar".into(),
                    self.path(self.artifact("apicurio/quarkus-run.jar")),
                ])
            }
            Service::Cassandra => self.cassandra_launch()?,
            Service::SparkMaster => {
                let port = url_port(&cfg.spark.master_url, "spark")?;
                self.spark_class("org.apache.spark.deploy.master.Master", &mem.spark_daemon_heap).args([
                    "--host".to_string(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.to_string(),
                    "--webui-port".into(),
                    cfg.spark.master_ui_port.to_string(),
                ])
            }
            Service::SparkWorker => {
                self.spark_class("org.apache.spark.deploy.worker.Worker", &mem.spark_daemon_heap).args([
                    "--host".to_string(),
                    "127.0.0.1".into(),
                    "--webui-port".into(),
                    cfg.spark.worker_ui_port.to_string(),
                    "--cores".into(),
                    mem.spark_worker_cores.to_string(),
                    "--memory".into(),
                    mem.spark_worker_memory.clone(),
                    "--work-dir".into(),
                    self.path(self.layout.data("spark-worker")),
                    cfg.spark.master_url.clone(),
                ])
            }
            Service::SparkConnect => self.spark_connect_launch()?,
        };
        Ok(launch)
    }

    fn cassandra_launch(&self) -> Result<Launch, String> {
        let heap = &self.config.cluster.memory.cassandra_heap;
        let lib = self.artifact("cassandra/lib");
        let jamm = fs::read_dir(&lib)
            .map_err(|e| format!("cannot read {}: {e} (run `make deps`)", lib.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("jamm-") && n.ends_with(".jar"))
            })
            .ok_or_else(|| format!("no jamm agent jar in {} (run `make deps`)", lib.display()))?;
        let data = self.layout.data("cassandra");
        fs::create_dir_all(data.join("triggers")).map_err(|e| e.to_string())?;
        let port = cassandra_port(self.config)?;
        let mut args: Vec<String> = vec![format!("-Xms{heap}"), format!("-Xmx{heap}")];
        args.extend(CASSANDRA_JVM_OPTIONS.iter().map(|s| s.to_string()));
        args.extend([
            "-Dpipeline.service=cassandra".into(),
            format!("-javaagent:{}", self.path(jamm)),
            // Without it Cassandra closes stdout after start-up and later log lines are lost.
            "-Dcassandra-foreground=yes".into(),
            format!("-Dcassandra.config=file://{}", self.path(self.layout.conf("cassandra/cassandra.yaml"))),
            format!("-Dlogback.configurationFile=file://{}", self.path(self.layout.conf("cassandra/logback.xml"))),
            format!("-Dcassandra.storagedir={}", self.path(data.clone())),
            format!("-Dcassandra.logdir={}", self.path(data.join("logs"))),
            format!("-Dcassandra.triggers_dir={}", self.path(data.join("triggers"))),
            format!("-Dcassandra.native_transport_port={port}"),
            format!("-Dcassandra.storage_port={CASSANDRA_STORAGE_PORT}"),
            // JMX on loopback only, RMI folded onto the same port (nodetool works).
            format!("-Dcassandra.jmx.local.port={CASSANDRA_JMX_PORT}"),
            format!("-Dcom.sun.management.jmxremote.rmi.port={CASSANDRA_JMX_PORT}"),
            "-Dcassandra.shutdown_announce_in_ms=0".into(),
            "-Dcassandra.skip_wait_for_gossip_to_settle=0".into(),
            "-cp".into(),
            format!("{}/*", self.path(lib)),
            "org.apache.cassandra.service.CassandraDaemon".into(),
        ]);
        // As root, Cassandra's mlockall would pin the whole heap; drop CAP_IPC_LOCK first.
        if nix::unistd::Uid::effective().is_root() && std::path::Path::new(SETPRIV).exists() {
            Ok(Launch::new(SETPRIV)
                .args(["--bounding-set=-ipc_lock".to_string(), "--".into(), self.path(self.java())])
                .args(args))
        } else {
            Ok(Launch::new(self.java()).args(args))
        }
    }

    fn spark_env(&self, launch: Launch) -> Launch {
        let home = self.spark_home();
        let mut l = launch
            .env("SPARK_HOME", self.path(home))
            .env("SPARK_CONF_DIR", self.path(self.layout.conf("spark")))
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_LOCAL_DIRS", self.path(self.layout.data("spark-local")));
        let java = self.java();
        if let Some(home) = java.parent().and_then(|bin| bin.parent()).filter(|h| !h.as_os_str().is_empty()) {
            l = l.env("JAVA_HOME", self.path(home.to_path_buf()));
        }
        l
    }

    fn spark_class(&self, class: &str, heap: &str) -> Launch {
        self.spark_env(Launch::new(self.spark_home().join("bin/spark-class")))
            .env("SPARK_DAEMON_MEMORY", heap)
            .env("SPARK_DAEMON_JAVA_OPTS", format!("-Dpipeline.service={class}"))
            .arg(class)
    }

    /// Extra connector jars (Kafka source, Avro, Cassandra connector, Connect) as a classpath.
    pub fn spark_extra_classpath(&self) -> String {
        format!("{}/*", self.path(self.artifact("spark/jars")))
    }

    fn spark_connect_launch(&self) -> Result<Launch, String> {
        let cfg = self.config;
        let mem = &cfg.cluster.memory;
        let port = url_port(&cfg.spark.connect_url, "sc")?;
        let cp = self.spark_extra_classpath();
        // spark-submit knows the Connect server class: no application jar argument; the class
        // comes from the extra classpath. Settings that follow conf/default.toml win over
        // spark-defaults.conf.
        let mut args: Vec<String> = vec![
            "org.apache.spark.deploy.SparkSubmit".into(),
            "--class".into(),
            "org.apache.spark.sql.connect.service.SparkConnectServer".into(),
            "--name".into(),
            "Spark Connect server".into(),
            "--master".into(),
            cfg.spark.master_url.clone(),
            "--driver-memory".into(),
            mem.spark_driver_memory.clone(),
        ];
        let auth = crate::connect_auth::spark_conf(self.layout, &cp);
        for (k, v) in auth.into_iter().chain([
            ("spark.executor.extraClassPath", cp),
            ("spark.driver.extraJavaOptions", "-Dpipeline.service=spark-connect".to_string()),
            ("spark.executor.memory", mem.spark_executor_memory.clone()),
            ("spark.connect.grpc.binding.port", port.to_string()),
            ("spark.ui.port", cfg.spark.app_ui_port.to_string()),
            ("spark.cassandra.connection.host", cassandra_host(cfg)),
            ("spark.cassandra.connection.port", cassandra_port(cfg)?.to_string()),
        ]) {
            args.extend(["--conf".to_string(), format!("{k}={v}")]);
        }
        let token_file = crate::connect_auth::ensure_token(cfg)?;
        let launch = self.spark_env(Launch::new(self.spark_home().join("bin/spark-class"))).args(args);
        Ok(crate::connect_auth::server_env(launch, &token_file))
    }

    /// One readiness probe; `Ok` means the service answers its protocol.
    pub async fn probe(&self, service: Service) -> ProbeResult {
        let cfg = self.config;
        match service {
            Service::Postgres => {
                let client = self.postgres_admin().await?;
                client.simple_query("SELECT 1").await.map(|_| ()).map_err(|e| e.to_string())
            }
            Service::Kafka => {
                let bootstrap = cfg.kafka.bootstrap_servers.clone();
                tokio::task::spawn_blocking(move || kafka_metadata(&bootstrap)).await.map_err(|e| e.to_string())?
            }
            Service::Registry => http_ok(&format!("{}/subjects", cfg.registry.url)).await,
            Service::Cassandra => {
                tcp_open(cassandra_port(cfg)?).await?;
                let session = scylla::client::session_builder::SessionBuilder::new()
                    .known_nodes(&cfg.cassandra.contact_points)
                    .connection_timeout(Duration::from_secs(3))
                    .build()
                    .await
                    .map_err(|e| e.to_string())?;
                session
                    .query_unpaged("SELECT release_version FROM system.local", &[])
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Service::SparkMaster => {
                let json = master_json(cfg).await?;
                match json.get("status").and_then(|s| s.as_str()) {
                    Some("ALIVE") => Ok(()),
                    other => Err(format!("master status {other:?}")),
                }
            }
            Service::SparkWorker => {
                let json = master_json(cfg).await?;
                let alive = json
                    .get("workers")
                    .and_then(|w| w.as_array())
                    .map(|ws| ws.iter().filter(|w| w.get("state").and_then(|s| s.as_str()) == Some("ALIVE")).count())
                    .unwrap_or(0);
                if alive >= 1 {
                    Ok(())
                } else {
                    Err("no ALIVE worker registered with the master".into())
                }
            }
            Service::SparkConnect => {
                tcp_open(url_port(&cfg.spark.connect_url, "sc")?).await?;
                spark_select_one(cfg).await
            }
        }
    }

    /// Set-up that needs the running service (idempotent).
    pub async fn after_ready(&self, service: Service) -> Result<(), String> {
        match service {
            Service::Postgres => self.ensure_postgres_role().await,
            Service::Kafka => {
                let k = &self.config.kafka;
                create_topics(&k.bootstrap_servers, &[k.topic.as_str(), k.dead_letter_topic.as_str()], k.partitions)
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn postgres_admin(&self) -> Result<tokio_postgres::Client, String> {
        let mut pg = tokio_postgres::Config::new();
        pg.host_path(self.layout.run_dir().join("postgres"))
            .port(self.config.postgres.port)
            .user("postgres")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(3));
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn ensure_postgres_role(&self) -> Result<(), String> {
        let pg = &self.config.postgres;
        let password = match pg.password() {
            Ok(p) if !p.is_empty() => p,
            _ => {
                let p = random_secret();
                if let Some(dir) = pg.password_file.parent() {
                    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                write_secret(&pg.password_file, &p)?;
                p
            }
        };
        let client = self.postgres_admin().await?;
        let quoted = password.replace('\'', "''");
        let role_exists = !client
            .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&pg.user])
            .await
            .map_err(|e| e.to_string())?
            .is_empty();
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        client
            .batch_execute(&format!("{verb} ROLE {} LOGIN PASSWORD '{quoted}'", pg.user))
            .await
            .map_err(|e| format!("cannot set up role {}: {e}", pg.user))?;
        let db_exists = !client
            .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&pg.database])
            .await
            .map_err(|e| e.to_string())?
            .is_empty();
        if !db_exists {
            client
                .batch_execute(&format!("CREATE DATABASE {} OWNER {}", pg.database, pg.user))
                .await
                .map_err(|e| format!("cannot create database {}: {e}", pg.database))?;
        }
        Ok(())
    }
}

/// Generated Kafka properties (shared file + launcher settings), under `<state>/conf/`.
const KAFKA_LOCAL_PROPERTIES: &str = "kafka/server.local.properties";

/// Fixed secondary ports (health/metrics of the registry; Cassandra gossip and JMX).
pub const REGISTRY_MANAGEMENT_PORT: u16 = 9081;
pub const CASSANDRA_STORAGE_PORT: u16 = 7000;
pub const CASSANDRA_JMX_PORT: u16 = 7199;

/// Oldest Java the schema registry runs on.
const REGISTRY_MIN_JAVA: u32 = 21;

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

const SETPRIV: &str = "/usr/bin/setpriv";

/// JVM options of Cassandra 5 on Java 17 (its jvm-server/jvm17-server options, trimmed).
const CASSANDRA_JVM_OPTIONS: &[&str] = &[
    "-Xss256k",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:+UseThreadPriorities",
    "-XX:+PerfDisableSharedMem",
    "-ea",
    "-da:net.openhft...",
    "-Djava.net.preferIPv4Stack=true",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
];

fn cassandra_host(config: &Config) -> String {
    config
        .cassandra
        .contact_points
        .first()
        .and_then(|cp| cp.rsplit_once(':'))
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// A PostgreSQL binary of the Debian package (the newest installed major version).
pub fn postgres_bin(name: &str) -> PathBuf {
    let root = PathBuf::from("/usr/lib/postgresql");
    let newest = fs::read_dir(&root)
        .ok()
        .and_then(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).max());
    match newest {
        Some(v) => root.join(v.to_string()).join("bin").join(name),
        None => PathBuf::from(name),
    }
}

fn chown_to_postgres(paths: &[&PathBuf]) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let (uid, gid) = crate::process::system_user("postgres").map_err(|e| {
        format!("{e}: install PostgreSQL from the distribution (apt-get install postgresql), which creates it")
    })?;
    for p in paths {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", p.display()))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn random_secret() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

fn write_secret(path: &std::path::Path, secret: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(secret.as_bytes()).map_err(|e| e.to_string())
}

/// A random Kafka cluster id: 22 characters of URL-safe base64 of 16 random bytes, never
/// starting with `-` (the storage tool would read it as an option, as Kafka's own generator
/// knows: it retries such ids too).
fn kafka_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let mut bits = u128::from_be_bytes(rand::random::<[u8; 16]>());
        let mut out = String::with_capacity(22);
        for _ in 0..22 {
            out.push(char::from(ALPHABET[(bits & 63) as usize]));
            bits >>= 6;
        }
        if !out.starts_with('-') {
            return out;
        }
    }
}

fn kafka_metadata(bootstrap: &str) -> ProbeResult {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "2000")
        .set("log_level", "0")
        .create()
        .map_err(|e| e.to_string())?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    if md.brokers().is_empty() {
        Err("metadata lists no broker".into())
    } else {
        Ok(())
    }
}

/// Creates topics, treating "already exists" as success.
pub async fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| e.to_string())?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))))
        .await
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}

/// A cheap first check before a driver is built (drivers log loudly on refused connections).
async fn tcp_open(port: u16) -> ProbeResult {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map(|_| ()).map_err(|e| format!("127.0.0.1:{port}: {e}"))
}

/// One HTTP client for every probe (they poll every 500 ms while services start).
fn http() -> Result<&'static reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    Ok(CLIENT.get_or_init(|| client))
}

async fn http_ok(url: &str) -> ProbeResult {
    let resp = http()?.get(url).send().await.map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {url} answered {}", resp.status()))
    }
}

async fn master_json(config: &Config) -> Result<serde_json::Value, String> {
    let url = format!("http://127.0.0.1:{}/json/", config.spark.master_ui_port);
    let resp = http()?.get(&url).send().await.map_err(|e| e.to_string())?;
    resp.json().await.map_err(|e| format!("{url}: {e}"))
}

/// `SELECT 1` through Spark Connect, with the token when the token file exists.
pub async fn spark_select_one(config: &Config) -> ProbeResult {
    use spark_connect_rs::SparkSessionBuilder;
    let url = pipeline_core::connect::connect_url(config, "pipeline", None).map_err(|e| e.to_string())?;
    let probe = async {
        let spark = SparkSessionBuilder::remote(url.secret()).build().await.map_err(|e| e.to_string())?;
        let batch = spark
            .sql("SELECT 1 AS one")
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if batch.num_rows() == 1 {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {} rows", batch.num_rows()))
        }
    };
    tokio::time::timeout(Duration::from_secs(20), probe)
        .await
        .map_err(|_| "Spark Connect did not answer within 20 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_roundtrip() {
        for s in Service::ALL {
            assert_eq!(s.name().parse::<Service>(), Ok(s));
        }
        assert!("zookeeper".parse::<Service>().unwrap_err().contains("unknown service"));
    }

    #[test]
    fn default_ports_match_the_design() {
        let c = Config::defaults();
        assert_eq!(Service::Kafka.ports(&c), vec![9092, 9093]);
        assert_eq!(Service::Registry.ports(&c), vec![8081, 9081]);
        assert_eq!(Service::Postgres.ports(&c), vec![5432]);
        assert_eq!(Service::Cassandra.ports(&c), vec![9042, 7000, 7199]);
        assert_eq!(Service::SparkMaster.ports(&c), vec![7077, 8083]);
        assert_eq!(Service::SparkWorker.ports(&c), vec![8084]);
        assert_eq!(Service::SparkConnect.ports(&c), vec![15002, 4040]);
    }

    #[test]
    fn kafka_cluster_ids_are_22_url_safe_chars_never_starting_with_a_dash() {
        let id = kafka_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, kafka_cluster_id());
        // 1 in 64 raw ids starts with '-': 2000 draws would almost surely show one.
        assert!((0..2000).all(|_| !kafka_cluster_id().starts_with('-')));
    }
}
