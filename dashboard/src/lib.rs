//! `pipeline dashboard`: a live, read-only page of the whole pipeline on 127.0.0.1:9021.
//!
//! Collectors, each on its own cadence and with one client to the service it reads:
//! - services: the launcher's own status (`Cluster::status`) every 10 s (2 s while one is
//!   down), and every second whether each recorded process is alive;
//! - [`kafka`]: one consumer (no group membership) for offsets, lag and dead letters, every 1 s;
//! - [`spark`]: the job's queries and their progress through one kept Spark Connect session,
//!   every 2 s while the page or the API is read, every 15 s otherwise;
//! - [`cassandra`]: one session for the latency probe, row estimates and the write rate, every 2 s;
//! - [`registry`] and [`audit`] (one PostgreSQL connection), every 10 s;
//! - [`airflow`] (when enabled): the latest DAG runs, every 5 s while watched, 30 s otherwise.
//!
//! Kafka bytes per topic come from the broker's log folder when it is local ([`disk`]).
//!
//! They write one [`state::Snapshot`]; [`web`] serves it as a page, JSON and Prometheus gauges.

pub mod airflow;
pub mod audit;
pub mod cassandra;
pub mod disk;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod spark;
pub mod state;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pipeline_cluster::Cluster;
use pipeline_core::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::{ServiceView, Shared};

/// Why the dashboard could not serve.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cluster.host `{0}` is not an IP address")]
    Addr(String),
    #[error("cannot listen on {addr}: {source} (is another dashboard running? `pipeline cluster status`)")]
    Bind { addr: String, source: std::io::Error },
    #[error("the dashboard's HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves the dashboard on `cluster.host`:`dashboard.port` until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DashboardError> {
    let addr = address(&config)?;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| DashboardError::Bind { addr: addr.to_string(), source })?;
    serve(config, listener, shutdown).await
}

/// Where the dashboard listens: `cluster.host`:`dashboard.port`.
pub fn address(config: &Config) -> Result<SocketAddr, DashboardError> {
    let ip: std::net::IpAddr =
        config.cluster.host.parse().map_err(|_| DashboardError::Addr(config.cluster.host.clone()))?;
    Ok(SocketAddr::new(ip, config.dashboard.port))
}

/// Serves the dashboard on an already bound listener (tests bind port 0).
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), DashboardError> {
    let shared: Shared = Default::default();
    state::update(&shared, |s| {
        s.topic = config.kafka.topic.clone();
        s.query_name = config.job.query_name.clone();
        s.airflow_enabled = config.airflow.enabled;
    });
    let viewed = spark::Viewed::default();
    let count_requests = Arc::new(tokio::sync::Notify::new());
    let (keys_tx, keys_rx) = std::sync::mpsc::sync_channel(4096);

    let collectors = shutdown.child_token();
    let kafka = {
        let (config, shared, token) = (config.clone(), shared.clone(), collectors.clone());
        std::thread::Builder::new()
            .name("dashboard-kafka".into())
            .spawn(move || kafka::run(config, shared, keys_tx, token))
            .map_err(DashboardError::Serve)?
    };
    let tasks = vec![
        tokio::spawn(run_services(config.clone(), shared.clone(), collectors.clone())),
        tokio::spawn(spark::run(config.clone(), shared.clone(), viewed.clone(), collectors.clone())),
        tokio::spawn(airflow::run(config.clone(), shared.clone(), viewed.clone(), collectors.clone())),
        tokio::spawn(cassandra::run(
            config.clone(),
            shared.clone(),
            keys_rx,
            count_requests.clone(),
            collectors.clone(),
        )),
        tokio::spawn(registry::run(config.clone(), shared.clone(), collectors.clone())),
        tokio::spawn(audit::run(config.clone(), shared.clone(), collectors.clone())),
    ];
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("dashboard on http://{addr}");
    }
    let app = web::router(web::AppState { shared, count_requests, viewed });
    let token = shutdown.clone();
    let served = axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await }).await;
    collectors.cancel();
    for t in tasks {
        t.abort();
    }
    // The Kafka thread notices the token within a second; it is not joined so that shutdown
    // never waits on a broker timeout.
    drop(kafka);
    served.map_err(DashboardError::Serve)
}

/// Full protocol probes (`Cluster::status`) every 10 s, or every 2 s while a service is down;
/// between them, every second, the cheap check that each recorded process is still alive, so
/// a stopped service turns red within a second without probing the cluster all the time (the
/// launcher's Cassandra and Spark Connect probes open a session each).
async fn run_services(config: Config, shared: Shared, shutdown: CancellationToken) {
    let cluster = Cluster::new(config);
    let mut last_full: Option<std::time::Instant> = None;
    while !shutdown.is_cancelled() {
        let any_down = state::read(&shared, |s| s.services.data.as_ref().is_some_and(|v| v.iter().any(|s| !s.healthy)));
        let period = if any_down { Duration::from_secs(2) } else { Duration::from_secs(10) };
        if last_full.is_none_or(|t| t.elapsed() >= period) {
            let views: Vec<ServiceView> = cluster
                .status()
                .await
                .into_iter()
                .map(|r| ServiceView {
                    name: r.service.name().to_string(),
                    healthy: r.healthy,
                    pid: r.pid,
                    rss_mib: r.rss_mib,
                    ports: r.ports,
                    detail: r.detail,
                    ui: r.ui,
                })
                .collect();
            last_full = Some(std::time::Instant::now());
            state::update(&shared, |s| s.services.set(views));
        } else {
            let gone: Vec<String> = pipeline_cluster::Service::ALL
                .iter()
                .filter(|svc| cluster.running(**svc).is_none())
                .map(|svc| svc.name().to_string())
                .collect();
            state::update(&shared, |s| {
                if let Some(views) = s.services.data.as_mut() {
                    for v in views.iter_mut().filter(|v| gone.contains(&v.name)) {
                        v.healthy = false;
                        v.pid = None;
                        v.rss_mib = 0;
                        v.detail = "not running".into();
                    }
                }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
