//! Kafka 4.1 in KRaft combined mode (broker + controller, no ZooKeeper), from the Maven jars.
//! The shared `server.properties` plus the settings that follow the pipeline's config are
//! written to a generated properties file, used by the storage formatter and the broker alike
//! (the storage tool has no `--override`). After start, the pipeline's topics are created.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use pipeline_core::clients::kafka::{client_config, create_topics};
use pipeline_core::config::KafkaConfig;
use pipeline_core::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::common::{run_tool, ServiceError};
use super::{arg, Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Kafka;

/// Generated Kafka properties (shared file + launcher settings), under `<state>/conf/`.
const LOCAL_PROPERTIES: &str = "kafka/server.local.properties";

impl Spec for Kafka {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        let broker = config.kafka.first_broker().map_err(ServiceError::Config)?;
        Ok(vec![broker.port(), config.kafka.controller_port])
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        ctx.artifact("kafka/lib")
    }

    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        write_properties(ctx)?;
        if ctx.layout.data("kafka").join("meta.properties").exists() {
            return Ok(());
        }
        let format = java(ctx, "kafka/tools-log4j2.properties")
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "--cluster-id",
                &cluster_id(),
                "--config",
            ])
            .arg(arg(ctx.layout.conf(LOCAL_PROPERTIES)));
        run_tool(&format, "kafka storage format", &ctx.layout.log("kafka"))
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        Ok(java(ctx, "kafka/log4j2.properties").arg("kafka.Kafka").arg(arg(ctx.layout.conf(LOCAL_PROPERTIES))))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        let kafka = ctx.config.kafka.clone();
        Box::pin(
            async move { tokio::task::spawn_blocking(move || metadata(&kafka)).await.map_err(ServiceError::probe)? },
        )
    }

    fn after_ready<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        let k = &ctx.config.kafka;
        Box::pin(async move {
            create_topics(k, &[k.topic.as_str(), k.dead_letter_topic.as_str()], k.partitions)
                .await
                .map_err(|reason| ServiceError::request("create the pipeline's topics", reason))
        })
    }
}

/// The shared `server.properties` plus the settings that come from `conf/default.toml`
/// (ports, data folder), appended so that they win.
fn write_properties(ctx: &Ctx) -> Result<(), ServiceError> {
    let cfg = &ctx.config;
    let broker = cfg.kafka.first_broker().map_err(ServiceError::Config)?;
    let (host, ctrl) = (ctx.host(), cfg.kafka.controller_port);
    let shared = ctx.layout.conf("kafka/server.properties");
    let base = fs::read_to_string(&shared).map_err(|e| ServiceError::io("read", &shared, e))?;
    let local = format!(
        "{base}\n# ---- written by `pipeline cluster up` from conf/default.toml (these win) ----\n\
         log.dirs={}\nlisteners=PLAINTEXT://{broker},CONTROLLER://{host}:{ctrl}\n\
         advertised.listeners=PLAINTEXT://{broker}\ncontroller.quorum.voters=1@{host}:{ctrl}\n\
         num.partitions={}\n",
        arg(ctx.layout.data("kafka")),
        cfg.kafka.partitions
    );
    let path = ctx.layout.conf(LOCAL_PROPERTIES);
    fs::write(&path, local).map_err(|e| ServiceError::io("write", &path, e))
}

fn java(ctx: &Ctx, log4j: &str) -> Launch {
    let heap = &ctx.config.cluster.memory.kafka_heap;
    Launch::new(ctx.java()).args([
        format!("-Xms{heap}"),
        format!("-Xmx{heap}"),
        "-XX:+UseG1GC".into(),
        "-Dpipeline.service=kafka".into(),
        format!("-Dlog4j2.configurationFile={}", arg(ctx.layout.conf(log4j))),
        "-cp".into(),
        format!("{}/*", arg(ctx.artifact("kafka/lib"))),
    ])
}

/// A random Kafka cluster id: 22 characters of URL-safe base64 of 16 random bytes, never
/// starting with `-` (the storage tool would read it as an option, as Kafka's own generator
/// knows: it retries such ids too).
fn cluster_id() -> String {
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

fn metadata(kafka: &KafkaConfig) -> Result<(), ServiceError> {
    // Quiet while polling a broker that is still starting: refused connections are expected.
    let consumer: BaseConsumer =
        client_config(kafka, "probe").set("log_level", "0").create().map_err(ServiceError::probe)?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(3)).map_err(ServiceError::probe)?;
    if md.brokers().is_empty() {
        Err(ServiceError::probe("metadata lists no broker"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_chars_never_starting_with_a_dash() {
        let id = cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, cluster_id());
        // 1 in 64 raw ids starts with '-': 2000 draws would almost surely show one.
        assert!((0..2000).all(|_| !cluster_id().starts_with('-')));
    }
}
