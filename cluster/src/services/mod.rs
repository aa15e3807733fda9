//! The services of the local cluster. Each one lives in its own module, which owns everything
//! about it: the artifact it needs, its one-time set-up, its command line, its ports and its
//! readiness probe (one place to read to understand Kafka: [`kafka`]).
//!
//! Readiness is always checked by protocol (a Kafka metadata request, a CQL query, an HTTP
//! call, a SQL query through Spark Connect, `SELECT 1` on PostgreSQL), never by sleeping.

pub mod airflow;
mod cassandra;
mod common;
mod dashboard;
mod kafka;
mod postgres;
mod registry;
mod spark;
mod supervisor;

use std::fmt;
use std::path::PathBuf;

use futures::future::BoxFuture;
use pipeline_core::Config;

use crate::layout::Layout;
use crate::process::Launch;

pub(crate) use common::write_secret;
pub use common::{find_jdk, spark_select_one, ServiceError};
pub use postgres::postgres_bin;

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
    Supervisor,
    Dashboard,
    AirflowApi,
    AirflowScheduler,
    AirflowDagProcessor,
}

/// What each service module provides. The launcher (`Cluster`) only talks to this.
pub(crate) trait Spec: Sync {
    /// TCP ports the service listens on.
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError>;
    /// Web UI (or HTTP API) of the service, if it has one.
    fn ui_url(&self, _config: &Config) -> Option<String> {
        None
    }
    /// The artifact the service needs; a missing one means `make deps` has not run.
    fn required_artifact(&self, ctx: &Ctx) -> PathBuf;
    /// One-time set-up before a start (idempotent). Blocking: the launcher runs it on a
    /// blocking thread (it may run tools such as `initdb` to completion).
    fn prepare(&self, _ctx: &Ctx) -> Result<(), ServiceError> {
        Ok(())
    }
    /// The long-running process.
    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError>;
    /// One readiness probe; `Ok` means the service answers its protocol.
    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>>;
    /// Set-up that needs the running service (idempotent).
    fn after_ready<'a>(&'a self, _ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async { Ok(()) })
    }
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

impl Service {
    /// Every service, in start order.
    pub const ALL: [Service; 12] = [
        Service::Postgres,
        Service::Kafka,
        Service::Registry,
        Service::Cassandra,
        Service::SparkMaster,
        Service::SparkWorker,
        Service::SparkConnect,
        Service::Supervisor,
        Service::Dashboard,
        Service::AirflowApi,
        Service::AirflowScheduler,
        Service::AirflowDagProcessor,
    ];

    /// Every service this config turns on: what `cluster up` without names starts and
    /// `cluster status` shows.
    pub fn enabled_in(config: &Config) -> Vec<Service> {
        Service::ALL.into_iter().filter(|s| s.enabled(config)).collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Kafka => "kafka",
            Service::Registry => "registry",
            Service::Cassandra => "cassandra",
            Service::SparkMaster => "spark-master",
            Service::SparkWorker => "spark-worker",
            Service::SparkConnect => "spark-connect",
            Service::Supervisor => "supervisor",
            Service::Dashboard => "dashboard",
            Service::AirflowApi => "airflow-api",
            Service::AirflowScheduler => "airflow-scheduler",
            Service::AirflowDagProcessor => "airflow-dag-processor",
        }
    }

    /// The service that must be ready before this one starts.
    pub fn depends_on(self) -> Option<Service> {
        match self {
            Service::SparkWorker => Some(Service::SparkMaster),
            Service::SparkConnect => Some(Service::SparkWorker),
            Service::AirflowApi => Some(Service::Postgres),
            Service::AirflowScheduler => Some(Service::AirflowApi),
            Service::AirflowDagProcessor => Some(Service::AirflowScheduler),
            _ => None,
        }
    }

    /// Whether `cluster up` without names starts it and `cluster status` shows it
    /// (`airflow.enabled` switches the Airflow services off).
    pub fn enabled(self, config: &Config) -> bool {
        match self {
            Service::AirflowApi | Service::AirflowScheduler | Service::AirflowDagProcessor => config.airflow.enabled,
            Service::Supervisor => config.cluster.supervisor.enabled,
            _ => true,
        }
    }

    /// The module that implements this service.
    pub(crate) fn spec(self) -> &'static dyn Spec {
        match self {
            Service::Postgres => &postgres::Postgres,
            Service::Kafka => &kafka::Kafka,
            Service::Registry => &registry::Registry,
            Service::Cassandra => &cassandra::Cassandra,
            Service::SparkMaster => &spark::Master,
            Service::SparkWorker => &spark::Worker,
            Service::SparkConnect => &spark::Connect,
            Service::Supervisor => &supervisor::Supervisor,
            Service::Dashboard => &dashboard::Dashboard,
            Service::AirflowApi => &airflow::Api,
            Service::AirflowScheduler => &airflow::Scheduler,
            Service::AirflowDagProcessor => &airflow::DagProcessor,
        }
    }

    /// TCP ports the service listens on (an unparsable address in the config gives none;
    /// `pipeline config check` reports it).
    pub fn ports(self, config: &Config) -> Vec<u16> {
        self.spec().ports(config).unwrap_or_default()
    }

    /// Web UI (or HTTP API) of the service, if it has one.
    pub fn ui_url(self, config: &Config) -> Option<String> {
        self.spec().ui_url(config)
    }
}

/// What every service module works with: the configuration and the state folder.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Config,
    pub layout: Layout,
}

impl Ctx {
    pub fn new(config: Config) -> Ctx {
        let layout = Layout::new(&config);
        Ctx { config, layout }
    }

    /// The interface every service binds to (loopback unless configured otherwise).
    pub fn host(&self) -> &str {
        &self.config.cluster.host
    }

    /// The JDK of the JVM services: `cluster.java_home`, else $JAVA_HOME, else `java`.
    pub fn java(&self) -> PathBuf {
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

    pub fn artifact(&self, rel: &str) -> PathBuf {
        self.layout.artifacts.join(rel)
    }

    pub fn required_artifact(&self, service: Service) -> PathBuf {
        service.spec().required_artifact(self)
    }

    pub fn prepare(&self, service: Service) -> Result<(), ServiceError> {
        let data = self.layout.data(service.name());
        std::fs::create_dir_all(&data).map_err(|e| ServiceError::io("create", &data, e))?;
        service.spec().prepare(self)
    }

    pub fn launch(&self, service: Service) -> Result<Launch, ServiceError> {
        service.spec().launch(self)
    }

    pub async fn probe(&self, service: Service) -> Result<(), ServiceError> {
        service.spec().probe(self).await
    }

    pub async fn after_ready(&self, service: Service) -> Result<(), ServiceError> {
        service.spec().after_ready(self).await
    }
}

/// A path as a command-line argument.
pub(crate) fn arg(p: impl AsRef<std::path::Path>) -> String {
    p.as_ref().to_string_lossy().into_owned()
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
        assert_eq!(Service::Supervisor.ports(&c), vec![9466]);
        assert_eq!(Service::Dashboard.ports(&c), vec![9021]);
        assert_eq!(Service::AirflowApi.ports(&c), vec![8082]);
    }
}
