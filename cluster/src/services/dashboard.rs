//! The dashboard: `pipeline dashboard`, the live read-only page on `cluster.host`:9021. It is
//! the `pipeline` binary itself, so it needs no artifact beyond a build of this repository.

use std::path::PathBuf;

use futures::future::BoxFuture;
use pipeline_core::Config;

use super::common::{http_ok, ServiceError};
use super::{Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Dashboard;

impl Spec for Dashboard {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(vec![config.dashboard.port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(url(config))
    }

    fn required_artifact(&self, _ctx: &Ctx) -> PathBuf {
        pipeline_binary()
    }

    fn launch(&self, _ctx: &Ctx) -> Result<Launch, ServiceError> {
        // The child inherits the environment (PIPELINE__* overrides) and working directory.
        Ok(Launch::new(pipeline_binary()).arg("dashboard"))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move { http_ok(&format!("{}/api/health", url(&ctx.config))).await })
    }
}

fn url(config: &Config) -> String {
    format!("http://{}:{}", config.cluster.host, config.dashboard.port)
}

/// The `pipeline` binary: $PIPELINE_BIN, else the running executable when it is `pipeline`,
/// else the `pipeline` next to it or one folder up (a test binary in `target/debug/deps/`).
pub(crate) fn pipeline_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PIPELINE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pipeline"));
    if exe.file_name().is_some_and(|n| n == "pipeline") {
        return exe;
    }
    let candidates = exe.ancestors().skip(1).take(2).map(|dir| dir.join("pipeline"));
    let candidates: Vec<PathBuf> = candidates.collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates.into_iter().next().unwrap_or_else(|| PathBuf::from("pipeline")))
}
