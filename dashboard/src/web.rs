//! HTTP: the page and its vendored assets, `/api/...` JSON, `/metrics`. Read-only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::state::{self, Shared};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const UPLOT_JS: &str = include_str!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/uPlot.LICENSE");

#[derive(Clone)]
pub struct AppState {
    pub shared: Shared,
    pub count_requests: Arc<Notify>,
    /// Reading the snapshot or a section marks the dashboard as watched (faster polling).
    pub viewed: crate::spark::Viewed,
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/assets/uPlot.iife.min.js", get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }))
        .route("/assets/uPlot.min.css", get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
        .route("/assets/uPlot.LICENSE", get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/snapshot", get(snapshot))
        .route("/api/{section}", get(section))
        .route("/api/cassandra/count", post(request_count))
        .route("/metrics", get(prometheus))
        .with_state(state)
}

async fn snapshot(State(app): State<AppState>) -> Response {
    app.viewed.touch();
    let body = state::read(&app.shared, |s| {
        let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
        v["ready"] = Value::Bool(s.ready());
        v["now_ms"] = json!(state::now_ms());
        v
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn section(State(app): State<AppState>, axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    app.viewed.touch();
    let value = state::read(&app.shared, |s| {
        let to = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
        match name.as_str() {
            "services" => Some(to(serde_json::to_value(&s.services))),
            "kafka" => Some(to(serde_json::to_value(&s.kafka))),
            "spark" => Some(to(serde_json::to_value(&s.spark))),
            "latency" => Some(to(serde_json::to_value(&s.latency))),
            "cassandra" => Some(to(serde_json::to_value(&s.cassandra))),
            "dlq" => Some(to(serde_json::to_value(&s.dlq))),
            "registry" => Some(to(serde_json::to_value(&s.registry))),
            "audit" => Some(to(serde_json::to_value(&s.audit))),
            "airflow" => Some(to(serde_json::to_value(&s.airflow))),
            "charts" => Some(to(serde_json::to_value(&s.charts))),
            _ => None,
        }
    });
    match value {
        Some(v) => Json(v).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such section: services, kafka, spark, latency, cassandra, dlq, registry, audit, airflow, charts, snapshot, health",
        )
            .into_response(),
    }
}

/// Asks for an exact row count (a table scan, at most one per 30 s); the result shows in
/// `/api/cassandra` when done.
async fn request_count(State(app): State<AppState>) -> Response {
    app.count_requests.notify_one();
    (StatusCode::ACCEPTED, Json(json!({"requested": true, "see": "/api/cassandra"}))).into_response()
}

async fn prometheus(State(app): State<AppState>) -> Response {
    let text = state::read(&app.shared, crate::metrics::render);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
