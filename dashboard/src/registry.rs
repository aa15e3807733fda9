//! Schema registry: subjects, their versions and compatibility levels (every 10 s).

use std::time::Duration;

use pipeline_core::Config;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::state::{self, RegistryView, Shared, SubjectView};

/// Subjects detailed on the page (tests create many); the pipeline's own always first.
pub const MAX_SUBJECTS: usize = 20;

async fn get(client: &reqwest::Client, url: &str) -> Result<Option<Value>, String> {
    let response = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let response = response.error_for_status().map_err(|e| format!("GET {url}: {e}"))?;
    response.json().await.map(Some).map_err(|e| format!("GET {url}: {e}"))
}

fn level(v: Option<Value>) -> Option<String> {
    let v = v?;
    v.get("compatibilityLevel").or_else(|| v.get("compatibility")).and_then(Value::as_str).map(str::to_string)
}

async fn view(client: &reqwest::Client, base: &str, own: &str) -> Result<RegistryView, String> {
    let mut subjects: Vec<String> = get(client, &format!("{base}/subjects"))
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let total = subjects.len();
    subjects.sort_by_key(|s| (s != own, s.clone()));
    subjects.truncate(MAX_SUBJECTS);
    let mut out = Vec::new();
    for subject in subjects {
        let versions = get(client, &format!("{base}/subjects/{subject}/versions"))
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let compatibility = level(get(client, &format!("{base}/config/{subject}")).await?);
        out.push(SubjectView { subject, versions, compatibility });
    }
    let global_compatibility = level(get(client, &format!("{base}/config")).await?);
    Ok(RegistryView { subjects_total: total, subjects: out, global_compatibility })
}

pub async fn run(config: Config, shared: Shared, shutdown: CancellationToken) {
    let base = config.registry.url.trim_end_matches('/').to_string();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(e) => {
            state::update(&shared, |s| s.registry.fail(format!("cannot create an HTTP client: {e}")));
            return;
        }
    };
    while !shutdown.is_cancelled() {
        match view(&client, &base, &config.registry.subject).await {
            Ok(v) => state::update(&shared, |s| s.registry.set(v)),
            Err(e) => state::update(&shared, |s| s.registry.fail(e)),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
