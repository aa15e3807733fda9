//! The native launcher: every service of the pipeline as a local process, no Docker.
//!
//! - [`service`]: the services, how each is prepared, launched and probed by protocol.
//! - [`process`]: detached process groups, pid files guarded by start time, port checks, logs.
//! - [`layout`]: the state folder and the embedded service config files.
//! - [`connect_auth`]: the Spark Connect token and the server's token interceptor.
//!
//! [`Cluster::up`] starts what is not running (a running cluster is left alone), waits for each
//! service to answer its protocol and fails with the service's name and the tail of its log
//! when it cannot start. [`Cluster::down`] stops exactly the processes `up` recorded.

pub mod connect_auth;
pub mod layout;
pub mod process;
pub mod service;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use pipeline_core::Config;

pub use layout::Layout;
pub use process::ProcessRecord;
pub use service::{Service, Services};

/// Why the cluster could not be brought up. Each message names the service and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{service}: port {port} on 127.0.0.1 is already in use by a process this launcher did not start; stop that process or change the port in the config")]
    PortInUse { service: Service, port: u16 },
    #[error("{service}: {} is missing; run `make deps` to install the service artifacts", path.display())]
    MissingArtifact { service: Service, path: PathBuf },
    #[error("{service}: {reason}")]
    Setup { service: Service, reason: String },
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
}

/// The local cluster described by one configuration.
pub struct Cluster {
    config: Config,
    layout: Layout,
}

const LOG_TAIL_LINES: usize = 25;

impl Cluster {
    pub fn new(config: Config) -> Cluster {
        let layout = Layout::new(&config);
        Cluster { config, layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn services(&self) -> Services<'_> {
        Services { config: &self.config, layout: &self.layout }
    }

    /// The services to act on: the requested ones (all when empty) plus their dependencies.
    pub fn with_dependencies(requested: &[Service]) -> BTreeSet<Service> {
        let mut set: BTreeSet<Service> =
            if requested.is_empty() { Service::ALL.into() } else { requested.iter().copied().collect() };
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
        ProcessRecord::read(&self.layout.pid_file(service.name())).filter(ProcessRecord::is_alive)
    }

    /// An exclusive lock on the state folder for the duration of `up` or `down`: two launchers
    /// never start, stop or wipe the same services at once (the second one waits).
    fn lock(&self) -> Result<std::fs::File, ClusterError> {
        let path = self.layout.run_dir().join("cluster.lock");
        let setup = |reason: String| ClusterError::Setup { service: Service::Postgres, reason };
        std::fs::create_dir_all(self.layout.run_dir())
            .map_err(|e| setup(format!("cannot create {}: {e}", path.display())))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| setup(format!("cannot open {}: {e}", path.display())))?;
        if file.try_lock().is_err() {
            eprintln!("another `pipeline cluster` command holds {}; waiting for it", path.display());
            file.lock().map_err(|e| setup(format!("cannot lock {}: {e}", path.display())))?;
        }
        Ok(file)
    }

    /// Starts the requested services (all when empty) and waits until each answers.
    pub async fn up(&self, requested: &[Service]) -> Result<Vec<(Service, Outcome)>, ClusterError> {
        let _lock = self.lock()?;
        self.layout.write_service_files().map_err(|e| ClusterError::Setup {
            service: Service::Postgres,
            reason: format!("cannot write service configs under {}: {e}", self.layout.state.display()),
        })?;
        let wanted = Self::with_dependencies(requested);
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
        let services = self.services();
        let log = self.layout.log(service.name());
        let timeout = Duration::from_secs(self.config.cluster.startup_timeout_secs);
        let started = Instant::now();

        if let Some(record) = self.running(service) {
            bar.set_message("running; checking health");
            self.wait_ready(service, record, started, timeout, bar).await?;
            return Ok((service, Outcome::AlreadyRunning));
        }

        let artifact = services.required_artifact(service);
        if !artifact.exists() {
            return Err(ClusterError::MissingArtifact { service, path: artifact });
        }
        for port in service.ports(&self.config) {
            if !process::port_is_free(port) {
                return Err(ClusterError::PortInUse { service, port });
            }
        }
        bar.set_message("preparing");
        services.prepare(service).map_err(|reason| ClusterError::Setup { service, reason })?;
        let launch = services.launch(service).map_err(|reason| ClusterError::Setup { service, reason })?;
        let record = launch.spawn_detached(&log).map_err(|e| ClusterError::Setup {
            service,
            reason: format!("cannot start {}: {e}", launch.program.display()),
        })?;
        record
            .write(&self.layout.pid_file(service.name()))
            .map_err(|e| ClusterError::Setup { service, reason: format!("cannot write pid file: {e}") })?;
        self.wait_ready(service, record, started, timeout, bar).await?;
        services.after_ready(service).await.map_err(|reason| ClusterError::Setup { service, reason })?;
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
        let services = self.services();
        let log = self.layout.log(service.name());
        let tail = || process::tail(&log, LOG_TAIL_LINES).join("\n");
        loop {
            if !record.is_alive() {
                return Err(ClusterError::Exited { service, log: log.clone(), tail: tail() });
            }
            let last = match services.probe(service).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
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
    pub fn down(&self, requested: &[Service]) -> Vec<Service> {
        let _lock = self.lock();
        let targets: Vec<Service> = if requested.is_empty() { Service::ALL.to_vec() } else { requested.to_vec() };
        let grace = Duration::from_secs(self.config.cluster.stop_timeout_secs);
        std::thread::scope(|scope| {
            let handles: Vec<_> = targets
                .iter()
                .map(|&service| {
                    let pid_file = self.layout.pid_file(service.name());
                    scope.spawn(move || {
                        let record = ProcessRecord::read(&pid_file)?;
                        let was_running = record.is_alive();
                        if let Err(e) = record.stop(grace) {
                            tracing::error!(service = service.name(), "stop failed: {e}");
                            return None;
                        }
                        let _ = std::fs::remove_file(&pid_file);
                        was_running.then_some(service)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect()
        })
    }

    /// Health of every service.
    pub async fn status(&self) -> Vec<ServiceStatus> {
        let services = self.services();
        join_all(Service::ALL.iter().map(|&service| {
            let services = &services;
            async move {
                let record = self.running(service);
                let probe = match record {
                    Some(_) => tokio::time::timeout(Duration::from_secs(25), services.probe(service))
                        .await
                        .unwrap_or_else(|_| Err("probe timed out".into())),
                    None => Err("not running".into()),
                };
                ServiceStatus {
                    service,
                    pid: record.map(|r| r.pid),
                    ports: service.ports(&self.config),
                    healthy: probe.is_ok(),
                    detail: probe.err().map(|e| first_line(&e).to_string()).unwrap_or_default(),
                    rss_mib: record.map(|r| process::group_rss_kib(r.pid) / 1024).unwrap_or(0),
                    ui: service.ui_url(&self.config),
                }
            }
        }))
        .await
    }

    /// The last `lines` lines of a service's log.
    pub fn logs(&self, service: Service, lines: usize) -> (PathBuf, Vec<String>) {
        let path = self.layout.log(service.name());
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
        let set = Cluster::with_dependencies(&[Service::SparkConnect]);
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![Service::SparkMaster, Service::SparkWorker, Service::SparkConnect]
        );
        assert_eq!(Cluster::with_dependencies(&[]).len(), Service::ALL.len());
    }
}
