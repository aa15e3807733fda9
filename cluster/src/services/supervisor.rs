//! The supervisor: `pipeline supervise`, started by the launcher like any other service. It
//! restarts services that die ([`crate::supervise`]) and keeps the Spark job in the state the
//! user asked for. It runs with the launcher's effective config, written to the state folder,
//! so it sees the same settings however the launcher got them.

use std::path::PathBuf;

use futures::future::BoxFuture;
use pipeline_core::Config;

use super::common::{http_ok, ServiceError};
use super::{arg, Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Supervisor;

/// The effective config handed to the supervisor, under `<state>/conf/`.
const CONFIG_FILE: &str = "supervisor/pipeline.toml";

impl Spec for Supervisor {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(vec![config.cluster.supervisor.metrics_addr.port()])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(format!("http://{}/metrics", config.cluster.supervisor.metrics_addr))
    }

    fn required_artifact(&self, _ctx: &Ctx) -> PathBuf {
        pipeline_bin().unwrap_or_else(|_| PathBuf::from("pipeline"))
    }

    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        let path = ctx.layout.conf(CONFIG_FILE);
        let text = toml::to_string(&ctx.config).map_err(|e| ServiceError::Config(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ServiceError::io("create", dir, e))?;
        }
        std::fs::write(&path, text).map_err(|e| ServiceError::io("write", &path, e))
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let bin = pipeline_bin()?;
        Ok(Launch::new(bin).args(["--config".to_string(), arg(ctx.layout.conf(CONFIG_FILE)), "supervise".into()]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(
            async move { http_ok(&format!("http://{}/metrics", ctx.config.cluster.supervisor.metrics_addr)).await },
        )
    }
}

/// The `pipeline` binary: `$PIPELINE_BIN`, else this very program when it is `pipeline`.
fn pipeline_bin() -> Result<PathBuf, ServiceError> {
    if let Some(bin) = std::env::var_os("PIPELINE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| ServiceError::Config(format!("cannot find this program: {e}")))?;
    if exe.file_name().is_some_and(|n| n == "pipeline") {
        Ok(exe)
    } else {
        Err(ServiceError::Config(format!(
            "the supervisor runs the `pipeline` binary, and this program is {}: set PIPELINE_BIN",
            exe.display()
        )))
    }
}
