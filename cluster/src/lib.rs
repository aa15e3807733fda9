//! The native launcher: every service of the pipeline as a local process, no Docker.
//!
//! - [`services`]: one module per service (artifact, set-up, command line, ports, probe).
//! - [`process`]: detached process groups, pid files guarded by start time, port checks, logs.
//! - [`layout`]: the state folder and the embedded service config files.
//! - [`supervise`]: the watchdog that restarts services which die (restart policy).
//! - [`connect_auth`]: the Spark Connect token and the server's token interceptor.
//!
//! [`Cluster::up`] starts what is not running (a running cluster is left alone), waits for each
//! service to answer its protocol and fails with the service's name and the tail of its log
//! when it cannot start. [`Cluster::down`] stops exactly the processes `up` recorded.

pub mod connect_auth;
pub mod layout;
pub mod process;
pub mod services;
pub mod supervise;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipeline_core::Config;

pub use layout::Layout;
pub use process::ProcessRecord;
pub use services::{Ctx, Service, ServiceError};

/// Why the cluster could not be brought up. Each message names the service and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{service}: port {port} on 127.0.0.1 is already in use by a process this launcher did not start; stop that process or change the port in the config")]
    PortInUse { service: Service, port: u16 },
    #[error("{service}: {} is missing; run `make deps` to install the service artifacts", path.display())]
    MissingArtifact { service: Service, path: PathBuf },
    #[error("{service}: {source}")]
    Service { service: Service, source: ServiceError },
    #[error("cannot lock the state folder ({}): {source}", path.display())]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot write the service config files under {}: {source}", path.display())]
    ServiceFiles { path: PathBuf, source: std::io::Error },
    #[error("{service} did not stop within {secs} s (port {port} is still in use)")]
    StillRunning { service: Service, secs: u64, port: u16 },
    #[error("{service} exited during start-up; last lines of {}:\n{tail}", log.display())]
    Exited { service: Service, log: PathBuf, tail: String },
    #[error("{service} did not become ready within {secs} s (last probe: {last}); last lines of {}:\n{tail}", log.display())]
    NotReady { service: Service, secs: u64, last: String, log: PathBuf, tail: String },
    #[error("{service} was not started because {dependency} failed")]
    DependencyFailed { service: Service, dependency: Service },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Several(Vec<ClusterError>),
}

/// What `up` did for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyRunning,
    Started { seconds: u64 },
}

/// One line of `cluster status`.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    pub service: Service,
    pub pid: Option<i32>,
    pub ports: Vec<u16>,
    pub healthy: bool,
    pub detail: String,
    pub rss_mib: u64,
    pub ui: Option<String>,
    /// Restarts by the supervisor, and the last unexpected exit (from its restart record).
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// The local cluster described by one configuration.
pub struct Cluster {
    ctx: Arc<Ctx>,
}

const LOG_TAIL_LINES: usize = 25;

/// How long a port may stay taken after its process group is gone (sockets closing).
const PORT_GRACE: Duration = Duration::from_secs(15);
/// How long `up` waits for a taken port before calling its holder foreign (a process of ours
/// that is still exiting frees it within moments).
const FOREIGN_PORT_WAIT: Duration = Duration::from_secs(5);

impl Cluster {
    pub fn new(config: Config) -> Cluster {
        Cluster { ctx: Arc::new(Ctx::new(config)) }
    }

    pub fn layout(&self) -> &Layout {
        &self.ctx.layout
    }

    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// The services to act on: the requested ones (all when empty) plus their dependencies.
    pub fn with_dependencies(&self, requested: &[Service]) -> BTreeSet<Service> {
        let mut set: BTreeSet<Service> = if requested.is_empty() {
            Service::enabled_in(self.config()).into_iter().collect()
        } else {
            requested.iter().copied().collect()
        };
        loop {
            let deps: Vec<Service> = set.iter().filter_map(|s| s.depends_on()).filter(|d| !set.contains(d)).collect();
            if deps.is_empty() {
                return set;
            }
            set.extend(deps);
        }
    }

    /// The recorded process of a service, if it is still the one we started.
    pub fn running(&self, service: Service) -> Option<ProcessRecord> {
        ProcessRecord::read(&self.layout().pid_file(service.name())).filter(ProcessRecord::is_alive)
    }

    /// An exclusive lock on the state folder for the duration of `up` or `down`: two launchers
    /// never start, stop or wipe the same services at once (the second one waits).
    /// The cluster lock, taken at once or else waited for (`Err(file)`: busy).
    fn try_lock(&self) -> Result<Result<std::fs::File, std::fs::File>, ClusterError> {
        let path = self.layout().run_dir().join("cluster.lock");
        let fail = |source| ClusterError::Lock { path: path.clone(), source };
        std::fs::create_dir_all(self.layout().run_dir()).map_err(fail)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(fail)?;
        if file.try_lock().is_err() {
            tracing::warn!("another `pipeline cluster` command holds {}; waiting for it", path.display());
            return Ok(Err(file));
        }
        Ok(Ok(file))
    }

    /// Takes the cluster lock, blocking the calling thread while another command holds it.
    fn lock_blocking(&self) -> Result<std::fs::File, ClusterError> {
        match self.try_lock()? {
            Ok(file) => Ok(file),
            Err(file) => {
                file.lock().map_err(|source| ClusterError::Lock {
                    path: self.layout().run_dir().join("cluster.lock"),
                    source,
                })?;
                Ok(file)
            }
        }
    }

    /// Takes the cluster lock; waiting for another command happens on a blocking thread, not
    /// on the runtime (the supervisor shares its runtime with its other loops).
    async fn lock(&self) -> Result<std::fs::File, ClusterError> {
        match self.try_lock()? {
            Ok(file) => Ok(file),
            Err(file) => {
                let path = self.layout().run_dir().join("cluster.lock");
                tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .map_err(|e| ClusterError::Lock { path: path.clone(), source: std::io::Error::other(e) })?
                    .map_err(|source| ClusterError::Lock { path, source })
            }
        }
    }

    /// Starts the requested services (all when empty) and waits until each answers.
    pub async fn up(&self, requested: &[Service]) -> Result<Vec<(Service, Outcome)>, ClusterError> {
        let _lock = self.lock().await?;
        self.up_locked(requested).await
    }

    /// Starts `service` again if its pid file still names a process that is gone (it died
    /// without `cluster down`); false if it is running or was stopped on purpose meanwhile.
    pub async fn restart_if_dead(&self, service: Service) -> Result<bool, ClusterError> {
        let _lock = self.lock().await?;
        match ProcessRecord::read(&self.layout().pid_file(service.name())) {
            Some(record) if !record.is_alive() => {
                // Leftovers of its group (e.g. executors) go first, so its ports are free. Stopping
                // waits (up to the grace period): on a blocking thread.
                let grace = Duration::from_secs(self.config().cluster.stop_timeout_secs);
                let pid_file = self.layout().pid_file(service.name());
                let stopped = tokio::task::spawn_blocking(move || record.stop(grace))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                stopped
                    .map_err(|e| ClusterError::Service { service, source: ServiceError::io("stop", &pid_file, e) })?;
                self.up_locked(&[service]).await.map(|_| true)
            }
            _ => Ok(false),
        }
    }

    async fn up_locked(&self, requested: &[Service]) -> Result<Vec<(Service, Outcome)>, ClusterError> {
        self.layout()
            .write_service_files()
            .map_err(|source| ClusterError::ServiceFiles { path: self.layout().state.join("conf"), source })?;
        let wanted = self.with_dependencies(requested);
        // Chains: a service follows its dependency; independent chains start concurrently.
        let chains: Vec<Vec<Service>> = wanted
            .iter()
            .filter(|s| s.depends_on().is_none())
            .map(|root| {
                let mut chain = vec![*root];
                while let Some(next) = wanted.iter().find(|s| s.depends_on() == chain.last().copied()) {
                    chain.push(*next);
                }
                chain
            })
            .collect();
        let progress = MultiProgress::new();
        let results = join_all(chains.into_iter().map(|chain| self.start_chain(chain, &progress))).await;
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for r in results {
            for item in r {
                match item {
                    Ok(o) => outcomes.push(o),
                    Err(e) => errors.push(e),
                }
            }
        }
        match errors.len() {
            0 => Ok(outcomes),
            1 => Err(errors.remove(0)),
            _ => Err(ClusterError::Several(errors)),
        }
    }

    async fn start_chain(
        &self,
        chain: Vec<Service>,
        progress: &MultiProgress,
    ) -> Vec<Result<(Service, Outcome), ClusterError>> {
        let mut out = Vec::new();
        let mut failed: Option<Service> = None;
        for service in chain {
            if let Some(dependency) = failed {
                out.push(Err(ClusterError::DependencyFailed { service, dependency }));
                continue;
            }
            let bar = progress.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:14} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(service.name());
            bar.enable_steady_tick(Duration::from_millis(120));
            let result = self.start_one(service, &bar).await;
            match &result {
                Ok((_, Outcome::AlreadyRunning)) => bar.finish_with_message("already running"),
                Ok((_, Outcome::Started { seconds })) => bar.finish_with_message(format!("ready in {seconds} s")),
                Err(_) => {
                    bar.finish_with_message("FAILED");
                    failed = Some(service);
                }
            }
            tracing::debug!(service = service.name(), ok = result.is_ok(), "cluster up step");
            out.push(result);
        }
        out
    }

    async fn start_one(&self, service: Service, bar: &ProgressBar) -> Result<(Service, Outcome), ClusterError> {
        let ctx = &self.ctx;
        let log = self.layout().log(service.name());
        let timeout = Duration::from_secs(self.config().cluster.startup_timeout_secs);
        let fail = |source| ClusterError::Service { service, source };
        let started = Instant::now();

        if let Some(record) = self.running(service) {
            bar.set_message("running; checking health");
            self.wait_ready(service, record, started, timeout, bar).await?;
            return Ok((service, Outcome::AlreadyRunning));
        }

        let artifact = ctx.required_artifact(service);
        if !artifact.exists() {
            return Err(ClusterError::MissingArtifact { service, path: artifact });
        }
        for port in service.spec().ports(self.config()).map_err(fail)? {
            if !process::wait_port_free(port, FOREIGN_PORT_WAIT).await {
                return Err(ClusterError::PortInUse { service, port });
            }
        }
        bar.set_message("preparing");
        // Set-up may run tools to completion (initdb, Kafka's storage formatter): off the runtime.
        let prep = Arc::clone(ctx);
        tokio::task::spawn_blocking(move || prep.prepare(service))
            .await
            .map_err(|e| fail(ServiceError::probe(format!("set-up task failed: {e}"))))?
            .map_err(fail)?;
        let launch = ctx.launch(service).map_err(fail)?;
        let record = launch
            .spawn_detached(&log)
            .map_err(|source| fail(ServiceError::ToolNotRun { tool: launch.program.display().to_string(), source }))?;
        let pid_file = self.layout().pid_file(service.name());
        record.write(&pid_file).map_err(|e| fail(ServiceError::io("write", &pid_file, e)))?;
        self.wait_ready(service, record, started, timeout, bar).await?;
        ctx.after_ready(service).await.map_err(fail)?;
        Ok((service, Outcome::Started { seconds: started.elapsed().as_secs() }))
    }

    async fn wait_ready(
        &self,
        service: Service,
        record: ProcessRecord,
        started: Instant,
        timeout: Duration,
        bar: &ProgressBar,
    ) -> Result<(), ClusterError> {
        let log = self.layout().log(service.name());
        let tail = || process::tail(&log, LOG_TAIL_LINES).join("\n");
        loop {
            if !record.is_alive() {
                return Err(ClusterError::Exited { service, log: log.clone(), tail: tail() });
            }
            let last = match self.ctx.probe(service).await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(ClusterError::NotReady {
                    service,
                    secs: timeout.as_secs(),
                    last,
                    log: log.clone(),
                    tail: tail(),
                });
            }
            bar.set_message(format!("waiting {} s ({})", started.elapsed().as_secs(), first_line(&last)));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the requested services (all when empty) that `up` started; returns those stopped.
    /// Returns once each process group is gone and its ports are free, or fails saying which
    /// port is still held.
    /// Blocking (it waits for processes to exit): async callers run it off the runtime.
    pub fn down(&self, requested: &[Service]) -> Result<Vec<Service>, ClusterError> {
        let _lock = self.lock_blocking()?;
        let targets: Vec<Service> = if requested.is_empty() { Service::ALL.to_vec() } else { requested.to_vec() };
        let grace = Duration::from_secs(self.config().cluster.stop_timeout_secs);
        let results: Vec<Result<Option<Service>, ClusterError>> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                targets.iter().map(|&service| scope.spawn(move || self.stop_one(service, grace))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(Ok(None))).collect()
        });
        let mut stopped = Vec::new();
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(s) => stopped.extend(s),
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(stopped),
            1 => Err(errors.remove(0)),
            _ => Err(ClusterError::Several(errors)),
        }
    }

    fn stop_one(&self, service: Service, grace: Duration) -> Result<Option<Service>, ClusterError> {
        let pid_file = self.layout().pid_file(service.name());
        let Some(record) = ProcessRecord::read(&pid_file) else { return Ok(None) };
        let was_running = record.is_alive();
        record
            .stop(grace)
            .map_err(|e| ClusterError::Service { service, source: ServiceError::io("stop", &pid_file, e) })?;
        let _ = std::fs::remove_file(&pid_file);
        let deadline = Instant::now() + PORT_GRACE;
        for port in service.ports(self.config()) {
            while !process::port_is_free(port) {
                if Instant::now() > deadline {
                    return Err(ClusterError::StillRunning { service, secs: PORT_GRACE.as_secs(), port });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(was_running.then_some(service))
    }

    /// Health of every service.
    pub async fn status(&self) -> Vec<ServiceStatus> {
        join_all(Service::enabled_in(self.config()).into_iter().map(|service| async move {
            let record = self.running(service);
            let restarts = supervise::RestartRecord::read(
                &self.layout().run_dir().join(format!("{}.restarts.json", service.name())),
            );
            let probe = match record {
                Some(_) => tokio::time::timeout(Duration::from_secs(25), self.ctx.probe(service))
                    .await
                    .unwrap_or_else(|_| Err(ServiceError::probe("probe timed out")))
                    .map_err(|e| e.to_string()),
                None => Err("not running".to_string()),
            };
            ServiceStatus {
                service,
                pid: record.map(|r| r.pid),
                ports: service.ports(self.config()),
                healthy: probe.is_ok(),
                detail: probe.err().map(|e| first_line(&e).to_string()).unwrap_or_default(),
                rss_mib: record.map(|r| process::group_rss_kib(r.pid) / 1024).unwrap_or(0),
                ui: service.ui_url(self.config()),
                restarts: restarts.restarts,
                last_exit: restarts.last_exit.map(|e| match restarts.last_action {
                    Some(action) => format!("{e} ({action})"),
                    None => e,
                }),
            }
        }))
        .await
    }

    /// The last `lines` lines of a service's log.
    pub fn logs(&self, service: Service, lines: usize) -> (PathBuf, Vec<String>) {
        let path = self.layout().log(service.name());
        let tail = process::tail(&path, lines);
        (path, tail)
    }
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or_default();
    match line.char_indices().nth(100) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_pulled_in() {
        let cluster = Cluster::new(Config::defaults());
        let set = cluster.with_dependencies(&[Service::SparkConnect]);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![Service::SparkMaster, Service::SparkWorker, Service::SparkConnect]
        );
        assert_eq!(cluster.with_dependencies(&[]).len(), Service::ALL.len());
        let mut off = Config::defaults();
        off.cluster.supervisor.enabled = false;
        assert!(!Cluster::new(off).with_dependencies(&[]).contains(&Service::Supervisor));
    }
}
