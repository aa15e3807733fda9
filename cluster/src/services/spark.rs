//! Spark 3.5 standalone: master, worker and the Spark Connect server (the driver of the
//! pipeline's streaming job). SPARK_HOME is the PyPI `pyspark` package; the connector jars
//! (Kafka source, Avro, Cassandra connector, Connect) come from Maven and go on the driver and
//! executor classpaths.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use pipeline_core::config::url_port;
use pipeline_core::Config;

use super::cassandra::contact_point;
use super::common::{http_json, tcp_open, ServiceError};
use super::{arg, Ctx, Spec};
use crate::connect_auth;
use crate::process::Launch;

pub(crate) struct Master;
pub(crate) struct Worker;
pub(crate) struct Connect;

impl Spec for Master {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        let port = url_port(&config.spark.master_url, "spark").map_err(ServiceError::Config)?;
        Ok(vec![port, config.spark.master_ui_port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(format!("http://{}:{}", config.cluster.host, config.spark.master_ui_port))
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        home(ctx).join("bin/spark-class")
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let cfg = &ctx.config;
        let port = url_port(&cfg.spark.master_url, "spark").map_err(ServiceError::Config)?;
        Ok(daemon(ctx, "org.apache.spark.deploy.master.Master").args([
            "--host".to_string(),
            ctx.host().into(),
            "--port".into(),
            port.to_string(),
            "--webui-port".into(),
            cfg.spark.master_ui_port.to_string(),
        ]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let json = master_json(ctx).await?;
            match json.get("status").and_then(|s| s.as_str()) {
                Some("ALIVE") => Ok(()),
                other => Err(ServiceError::probe(format!("master status {other:?}"))),
            }
        })
    }
}

impl Spec for Worker {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(vec![config.spark.worker_ui_port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(format!("http://{}:{}", config.cluster.host, config.spark.worker_ui_port))
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        home(ctx).join("bin/spark-class")
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let cfg = &ctx.config;
        let mem = &cfg.cluster.memory;
        Ok(daemon(ctx, "org.apache.spark.deploy.worker.Worker").args([
            "--host".to_string(),
            ctx.host().into(),
            "--webui-port".into(),
            cfg.spark.worker_ui_port.to_string(),
            "--cores".into(),
            mem.spark_worker_cores.to_string(),
            "--memory".into(),
            mem.spark_worker_memory.clone(),
            "--work-dir".into(),
            arg(ctx.layout.data("spark-worker")),
            cfg.spark.master_url.clone(),
        ]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let json = master_json(ctx).await?;
            let alive = json
                .get("workers")
                .and_then(|w| w.as_array())
                .map(|ws| ws.iter().filter(|w| w.get("state").and_then(|s| s.as_str()) == Some("ALIVE")).count())
                .unwrap_or(0);
            if alive >= 1 {
                Ok(())
            } else {
                Err(ServiceError::probe("no ALIVE worker registered with the master"))
            }
        })
    }
}

impl Spec for Connect {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        let port = url_port(&config.spark.connect_url, "sc").map_err(ServiceError::Config)?;
        Ok(vec![port, config.spark.app_ui_port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(format!("http://{}:{}", config.cluster.host, config.spark.app_ui_port))
    }

    /// The token interceptor, built by `make deps` after the connector jars.
    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        connect_auth::interceptor_jar(&ctx.layout)
    }

    /// The token in the state folder's secrets, generated on first start.
    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        connect_auth::ensure_token(&ctx.config).map(|_| ())
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let cfg = &ctx.config;
        let mem = &cfg.cluster.memory;
        let port = url_port(&cfg.spark.connect_url, "sc").map_err(ServiceError::Config)?;
        let token_file = connect_auth::ensure_token(cfg)?;
        let (cassandra_host, cassandra_port) = contact_point(cfg)?;
        let cp = format!("{}/*", arg(ctx.artifact("spark/jars")));
        // spark-submit knows the Connect server class: no application jar argument; the class
        // comes from the extra classpath. Settings that follow conf/default.toml win over
        // spark-defaults.conf.
        let mut args: Vec<String> = vec![
            "org.apache.spark.deploy.SparkSubmit".into(),
            "--class".into(),
            "org.apache.spark.sql.connect.service.SparkConnectServer".into(),
            // The application's name in the master UI: the pipeline it serves, not the server.
            "--name".into(),
            app_name(cfg),
            "--master".into(),
            cfg.spark.master_url.clone(),
            "--driver-memory".into(),
            mem.spark_driver_memory.clone(),
        ];
        let auth = connect_auth::spark_conf(&ctx.layout, &cp);
        for (k, v) in auth.into_iter().chain([
            ("spark.executor.extraClassPath", cp),
            ("spark.driver.extraJavaOptions", "-Dpipeline.service=spark-connect".to_string()),
            ("spark.driver.host", ctx.host().to_string()),
            ("spark.executor.memory", mem.spark_executor_memory.clone()),
            ("spark.connect.grpc.binding.port", port.to_string()),
            ("spark.ui.port", cfg.spark.app_ui_port.to_string()),
            ("spark.cassandra.connection.host", cassandra_host),
            ("spark.cassandra.connection.port", cassandra_port.to_string()),
        ]) {
            args.extend(["--conf".to_string(), format!("{k}={v}")]);
        }
        let launch = env(ctx, Launch::new(home(ctx).join("bin/spark-class"))).args(args);
        Ok(connect_auth::server_env(launch, &token_file, ctx.host()))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let url = &ctx.config.spark.connect_url;
            tcp_open(ctx.host(), url_port(url, "sc").map_err(ServiceError::Config)?).await?;
            spark_select_one(&ctx.config).await.map_err(ServiceError::Probe)
        })
    }
}

fn home(ctx: &Ctx) -> PathBuf {
    ctx.artifact("spark/py/pyspark")
}

fn env(ctx: &Ctx, launch: Launch) -> Launch {
    let mut l = launch
        .env("SPARK_HOME", arg(home(ctx)))
        .env("SPARK_CONF_DIR", arg(ctx.layout.conf("spark")))
        .env("SPARK_LOCAL_IP", ctx.host())
        .env("SPARK_LOCAL_DIRS", arg(ctx.layout.data("spark-local")));
    let java = ctx.java();
    if let Some(home) = java.parent().and_then(|bin| bin.parent()).filter(|h| !h.as_os_str().is_empty()) {
        l = l.env("JAVA_HOME", arg(home));
    }
    l
}

/// A master or worker daemon through `spark-class`.
fn daemon(ctx: &Ctx, class: &str) -> Launch {
    env(ctx, Launch::new(home(ctx).join("bin/spark-class")))
        .env("SPARK_DAEMON_MEMORY", ctx.config.cluster.memory.spark_daemon_heap.as_str())
        .env("SPARK_DAEMON_JAVA_OPTS", format!("-Dpipeline.service={class}"))
        .arg(class)
}

async fn master_json(ctx: &Ctx) -> Result<serde_json::Value, ServiceError> {
    http_json(&format!("http://{}:{}/json/", ctx.host(), ctx.config.spark.master_ui_port)).await
}

/// `SELECT 1` through Spark Connect, with the token when the token file exists.
pub async fn spark_select_one(config: &Config) -> Result<(), String> {
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

/// The Spark application's name (`spark.app.name` of the Connect server, shown by the master
/// UI): the pipeline it runs, e.g. `pipeline users_created -> pipeline.created_users (Spark Connect)`.
pub fn app_name(cfg: &pipeline_core::Config) -> String {
    format!("pipeline {} -> {}.{} (Spark Connect)", cfg.kafka.topic, cfg.cassandra.keyspace, cfg.cassandra.table)
}
