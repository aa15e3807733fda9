//! Cassandra 5.0 from the Maven jars: `CassandraDaemon` launched directly with the JDK 17
//! module flags and the jamm agent, a small heap, every port on the configured host.

use std::fs;
use std::path::PathBuf;

use futures::future::BoxFuture;
use pipeline_core::clients::cassandra::session;
use pipeline_core::Config;

use super::common::{tcp_open, ServiceError};
use super::{arg, Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Cassandra;

const SETPRIV: &str = "/usr/bin/setpriv";

impl Spec for Cassandra {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        let (_, cql) = contact_point(config)?;
        Ok(vec![cql, config.cassandra.storage_port, config.cassandra.jmx_port])
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        ctx.artifact("cassandra/lib")
    }

    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        let triggers = ctx.layout.data("cassandra").join("triggers");
        fs::create_dir_all(&triggers).map_err(|e| ServiceError::io("create", &triggers, e))
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let cfg = &ctx.config;
        let heap = &cfg.cluster.memory.cassandra_heap;
        let lib = ctx.artifact("cassandra/lib");
        let jamm = fs::read_dir(&lib)
            .map_err(|e| ServiceError::io("read (run `make deps`)", &lib, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("jamm-") && n.ends_with(".jar"))
            })
            .ok_or_else(|| ServiceError::Config(format!("no jamm agent jar in {} (run `make deps`)", lib.display())))?;
        let data = ctx.layout.data("cassandra");
        let (_, port) = contact_point(cfg)?;
        let mut args: Vec<String> = vec![format!("-Xms{heap}"), format!("-Xmx{heap}")];
        args.extend(JVM_OPTIONS.iter().map(|s| s.to_string()));
        args.extend([
            "-Dpipeline.service=cassandra".into(),
            format!("-javaagent:{}", arg(jamm)),
            // Without it Cassandra closes stdout after start-up and later log lines are lost.
            "-Dcassandra-foreground=yes".into(),
            format!("-Dcassandra.config=file://{}", arg(ctx.layout.conf("cassandra/cassandra.yaml"))),
            format!("-Dlogback.configurationFile=file://{}", arg(ctx.layout.conf("cassandra/logback.xml"))),
            format!("-Dcassandra.storagedir={}", arg(&data)),
            format!("-Dcassandra.logdir={}", arg(data.join("logs"))),
            format!("-Dcassandra.triggers_dir={}", arg(data.join("triggers"))),
            format!("-Dcassandra.native_transport_port={port}"),
            format!("-Dcassandra.storage_port={}", cfg.cassandra.storage_port),
            // JMX on loopback only, RMI folded onto the same port (nodetool works).
            format!("-Dcassandra.jmx.local.port={}", cfg.cassandra.jmx_port),
            format!("-Dcom.sun.management.jmxremote.rmi.port={}", cfg.cassandra.jmx_port),
            "-Dcassandra.shutdown_announce_in_ms=0".into(),
            "-Dcassandra.skip_wait_for_gossip_to_settle=0".into(),
            "-cp".into(),
            format!("{}/*", arg(lib)),
            "org.apache.cassandra.service.CassandraDaemon".into(),
        ]);
        // As root, Cassandra's mlockall would pin the whole heap; drop CAP_IPC_LOCK first.
        if nix::unistd::Uid::effective().is_root() && std::path::Path::new(SETPRIV).exists() {
            Ok(Launch::new(SETPRIV)
                .args(["--bounding-set=-ipc_lock".to_string(), "--".into(), arg(ctx.java())])
                .args(args))
        } else {
            Ok(Launch::new(ctx.java()).args(args))
        }
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let (host, port) = contact_point(&ctx.config)?;
            tcp_open(&host, port).await?;
            let session = session(&ctx.config.cassandra).await.map_err(ServiceError::probe)?;
            session
                .query_unpaged("SELECT release_version FROM system.local", &[])
                .await
                .map(|_| ())
                .map_err(ServiceError::probe)
        })
    }
}

/// Host and CQL port of the first contact point, which is where the local node listens.
pub(crate) fn contact_point(config: &Config) -> Result<(String, u16), ServiceError> {
    let cp = config
        .cassandra
        .contact_points
        .first()
        .ok_or_else(|| ServiceError::Config("cassandra.contact_points is empty".into()))?;
    cp.rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .ok_or_else(|| ServiceError::Config(format!("cassandra.contact_points: `{cp}` is not host:port")))
}

/// JVM options of Cassandra 5 on Java 17 (its jvm-server/jvm17-server options, trimmed).
const JVM_OPTIONS: &[&str] = &[
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
