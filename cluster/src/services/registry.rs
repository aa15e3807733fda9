//! The schema registry: Apicurio Registry 3 (Quarkus app from Maven Central) with its
//! Confluent-compatible API. It needs Java 21+, which the launcher finds on its own.

use std::path::PathBuf;

use futures::future::BoxFuture;
use pipeline_core::config::url_port;
use pipeline_core::Config;

use super::common::{find_jdk, http_ok, ServiceError};
use super::{arg, Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Registry;

/// Oldest Java the registry runs on.
const MIN_JAVA: u32 = 21;

impl Spec for Registry {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        let http = url_port(&config.registry.url, "http").map_err(ServiceError::Config)?;
        Ok(vec![http, config.registry.management_port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(config.registry.url.clone())
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        ctx.artifact("apicurio/quarkus-run.jar")
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let cfg = &ctx.config;
        let port = url_port(&cfg.registry.url, "http").map_err(ServiceError::Config)?;
        let heap = &cfg.cluster.memory.registry_heap;
        Ok(Launch::new(java(ctx)?).args([
            format!("-Xms{heap}"),
            format!("-Xmx{heap}"),
            "-Dpipeline.service=registry".into(),
            format!("-Dquarkus.config.locations={}", arg(ctx.layout.conf("apicurio/application.properties"))),
            "-XX:+UseSerialGC".into(),
            format!("-Dquarkus.http.port={port}"),
            format!("-Dquarkus.management.port={}", cfg.registry.management_port),
            format!("-Dquarkus.http.host={}", ctx.host()),
            format!("-Dquarkus.management.host={}", ctx.host()),
            "-jar".into(),
            arg(ctx.artifact("apicurio/quarkus-run.jar")),
        ]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move { http_ok(&format!("{}/subjects", ctx.config.registry.url)).await })
    }
}

/// `cluster.registry_java_home`, else the newest JDK of at least 21 under /usr/lib/jvm.
fn java(ctx: &Ctx) -> Result<PathBuf, ServiceError> {
    let home = &ctx.config.cluster.registry_java_home;
    if !home.is_empty() {
        return Ok(PathBuf::from(home).join("bin/java"));
    }
    find_jdk(MIN_JAVA).ok_or_else(|| {
        ServiceError::MissingJava(format!(
            "the schema registry (Apicurio 3) needs Java {MIN_JAVA} or newer and none was found under \
             /usr/lib/jvm; install one (e.g. a Temurin 21/25 JDK) or set cluster.registry_java_home"
        ))
    })
}
