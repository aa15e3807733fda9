//! `pipeline dashboard`: a live, read-only page of the whole pipeline on 127.0.0.1:9021.
//!
//! Collectors, each on its own cadence and with one client to the service it reads:
//! - [`services`](run_services): the launcher's own status (`Cluster::status`), every 2 s;
//! - [`kafka`]: one consumer (no group membership) for offsets, lag and dead letters, every 1 s;
//! - [`spark`]: the job's queries and their progress, every 2 s;
//! - [`cassandra`]: one session for the latency probe and row estimates, every 2 s;
//! - [`registry`] and [`audit`] (one PostgreSQL connection), every 10 s.
//!
//! They write one [`state::Snapshot`]; [`web`] serves it as a page, JSON and Prometheus gauges.

pub mod audit;
pub mod cassandra;
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
    #[error("dashboard.addr `{0}` is not an IP:port address")]
    Addr(String),
    #[error("cannot listen on {addr}: {source} (is another dashboard running? `pipeline cluster status`)")]
    Bind { addr: String, source: std::io::Error },
    #[error("the dashboard's HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Serves the dashboard on `dashboard.addr` until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), DashboardError> {
    let addr: SocketAddr = config.dashboard.addr.parse().map_err(|_| DashboardError::Addr(config.dashboard.addr.clone()))?;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| DashboardError::Bind { addr: addr.to_string(), source })?;
    serve(config, listener, shutdown).await
}

/// Serves the dashboard on an already bound listener (tests bind port 0).
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), DashboardError> {
    let shared: Shared = Default::default();
    state::update(&shared, |s| {
        s.topic = config.kafka.topic.clone();
        s.query_name = config.job.query_name.clone();
    });
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
        tokio::spawn(spark::run(config.clone(), shared.clone(), collectors.clone())),
        tokio::spawn(cassandra::run(config.clone(), shared.clone(), keys_rx, count_requests.clone(), collectors.clone())),
        tokio::spawn(registry::run(config.clone(), shared.clone(), collectors.clone())),
        tokio::spawn(audit::run(config.clone(), shared.clone(), collectors.clone())),
    ];
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("dashboard on http://{addr}");
    }
    let app = web::router(web::AppState { shared, count_requests });
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

/// The launcher's status of every service, every 2 s (a stopped service shows at once: its
/// pid is gone before any probe runs).
async fn run_services(config: Config, shared: Shared, shutdown: CancellationToken) {
    let cluster = Cluster::new(config);
    while !shutdown.is_cancelled() {
        let rows = cluster.status().await;
        let views: Vec<ServiceView> = rows
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
        state::update(&shared, |s| s.services.set(views));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
