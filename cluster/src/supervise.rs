//! Services that die come back: the watchdog half of `pipeline supervise`.
//!
//! A service whose pid file still names a process that is gone exited without `cluster down`
//! (which removes the pid file first): it is started again after a backoff, at most
//! `cluster.restart.max_restarts` times within `window_secs`, then left down. Every restart is
//! recorded in `<state>/run/<service>.restarts.json` (shown by `cluster status`), logged with
//! its reason and counted in the `pipeline_service_restarts_total` metric.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pipeline_core::shutdown::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::process::{self, ProcessRecord};
use crate::{Cluster, ClusterError, Service};

/// What the supervisor remembers of one service's unexpected exits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestartRecord {
    /// Restarts so far (ever).
    pub restarts: u32,
    /// Seconds since the epoch of the restarts inside the current window.
    pub recent: Vec<u64>,
    /// Why the process was found gone the last time, with the last line of its log.
    pub last_exit: Option<String>,
    /// The outcome of the last attempt ("restarted", "failed: ...", "gave up: ...").
    pub last_action: Option<String>,
}

impl RestartRecord {
    pub fn read(path: &Path) -> RestartRecord {
        fs::read_to_string(path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default()
    }

    fn write(&self, path: &Path) {
        if let Ok(json) = serde_json::to_string(self) {
            if let Err(e) = fs::write(path, json) {
                tracing::warn!("cannot record restarts in {}: {e}", path.display());
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Watches every service until `shutdown`; restarts the ones that died.
pub async fn watch(cluster: &Cluster, shutdown: CancellationToken) {
    let cfg = cluster.config().clone();
    let policy = &cfg.cluster.restart;
    let interval = Duration::from_millis(cfg.cluster.supervisor.check_interval_ms);
    // Per service: when the next attempt may run, and the current backoff.
    let mut next_try: HashMap<Service, (Instant, Duration)> = HashMap::new();
    tracing::info!(enabled = policy.enabled, "service watchdog running");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !policy.enabled {
            continue;
        }
        for service in Service::ALL {
            if service == Service::Supervisor {
                continue;
            }
            let Some(record) = ProcessRecord::read(&cluster.layout().pid_file(service.name())) else {
                next_try.remove(&service);
                continue;
            };
            if record.is_alive() {
                next_try.remove(&service);
                continue;
            }
            let backoff_base = Duration::from_millis(policy.backoff_base_ms);
            let (when, backoff) = *next_try.entry(service).or_insert((Instant::now() + backoff_base, backoff_base));
            if Instant::now() < when {
                continue;
            }
            let path = cluster.layout().run_dir().join(format!("{}.restarts.json", service.name()));
            let mut rec = RestartRecord::read(&path);
            let now = now_secs();
            rec.recent.retain(|t| now.saturating_sub(*t) < policy.window_secs);
            let last_line = process::tail(&cluster.layout().log(service.name()), 1).join("");
            rec.last_exit = Some(format!("process {} exited unexpectedly; last log line: {last_line}", record.pid));
            if rec.recent.len() as u32 >= policy.max_restarts {
                let reason = format!(
                    "gave up: {} restarts within {} s (cluster.restart.max_restarts); `pipeline cluster up {service}` starts it again",
                    rec.recent.len(),
                    policy.window_secs
                );
                if rec.last_action.as_deref() != Some(reason.as_str()) {
                    tracing::error!(service = service.name(), "{reason}");
                    rec.last_action = Some(reason);
                    rec.write(&path);
                }
                continue;
            }
            tracing::warn!(service = service.name(), pid = record.pid, last_log = %last_line, "service died: restarting");
            metrics::counter!("pipeline_service_restarts_total", "service" => service.name()).increment(1);
            rec.restarts += 1;
            rec.recent.push(now);
            rec.last_action = Some(match cluster.restart_if_dead(service).await {
                Ok(true) => {
                    tracing::info!(service = service.name(), "restarted");
                    next_try.remove(&service);
                    "restarted".to_string()
                }
                Ok(false) => "already running again (someone else started it)".to_string(),
                Err(e) => {
                    let doubled = (backoff * 2).min(Duration::from_millis(policy.backoff_max_ms));
                    next_try.insert(service, (Instant::now() + doubled, doubled));
                    tracing::error!(service = service.name(), "restart failed (next try in {doubled:?}): {e}");
                    metrics::counter!("pipeline_service_restart_failures_total", "service" => service.name())
                        .increment(1);
                    format!("failed: {}", first_line(&e))
                }
            });
            rec.write(&path);
        }
    }
}

fn first_line(e: &ClusterError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
