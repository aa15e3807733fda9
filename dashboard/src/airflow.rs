//! Airflow's DAG runs (only when `airflow.enabled`): the latest runs of each DAG, every 5 s
//! while the page is watched (30 s otherwise).
//!
//! Airflow 3's REST API (`/api/v2`) wants a JWT: one is asked for at `/auth/token` with the
//! admin password the simple auth manager wrote to `<state>/secrets/airflow-passwords.json`,
//! kept, and asked for again when the API answers 401 (tokens expire).

use std::time::Duration;

use pipeline_cluster::services::airflow as launcher;
use pipeline_core::Config;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::spark::Viewed;
use crate::state::{self, AirflowView, DagRunView, DagView, Shared};

/// DAGs listed, and runs shown per DAG (newest first).
const MAX_DAGS: usize = 20;
pub const RUNS_PER_DAG: usize = 5;

struct Client {
    http: reqwest::Client,
    base: String,
    password_file: std::path::PathBuf,
    token: Option<String>,
}

impl Client {
    async fn login(&mut self) -> Result<String, String> {
        let text = std::fs::read_to_string(&self.password_file).map_err(|e| {
            format!("{}: {e} (the API server writes it on its first start)", self.password_file.display())
        })?;
        let users: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.password_file.display()))?;
        let password = users[launcher::ADMIN_USER]
            .as_str()
            .ok_or_else(|| format!("{} has no `{}`", self.password_file.display(), launcher::ADMIN_USER))?;
        let url = format!("{}/auth/token", self.base);
        let response = self
            .http
            .post(&url)
            .json(&json!({"username": launcher::ADMIN_USER, "password": password}))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?
            .error_for_status()
            .map_err(|e| format!("POST {url}: {e}"))?;
        let body: Value = response.json().await.map_err(|e| format!("POST {url}: {e}"))?;
        let token = body["access_token"].as_str().ok_or_else(|| format!("POST {url}: no access_token"))?.to_string();
        self.token = Some(token.clone());
        Ok(token)
    }

    /// GET `/api/v2{path}`, logging in first or again when needed.
    async fn get(&mut self, path: &str) -> Result<Value, String> {
        let url = format!("{}/api/v2{path}", self.base);
        for attempt in 0..2 {
            let token = match self.token.clone() {
                Some(t) => t,
                None => self.login().await?,
            };
            let response =
                self.http.get(&url).bearer_auth(token).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                self.token = None;
                continue;
            }
            let response = response.error_for_status().map_err(|e| format!("GET {url}: {e}"))?;
            return response.json().await.map_err(|e| format!("GET {url}: {e}"));
        }
        Err(format!("GET {url}: unauthorized after a new login"))
    }

    async fn view(&mut self) -> Result<AirflowView, String> {
        let dags = self.get(&format!("/dags?limit={MAX_DAGS}&order_by=dag_id")).await?;
        let mut out = AirflowView { ui: self.base.clone(), dags: Vec::new() };
        for dag in dags["dags"].as_array().into_iter().flatten() {
            let Some(id) = dag["dag_id"].as_str() else { continue };
            let runs = self.get(&format!("/dags/{id}/dagRuns?order_by=-run_after&limit={RUNS_PER_DAG}")).await?;
            out.dags.push(DagView {
                dag_id: id.to_string(),
                paused: dag["is_paused"].as_bool().unwrap_or(false),
                url: ui_url(&self.base, &["dags", id]),
                runs: runs["dag_runs"].as_array().into_iter().flatten().map(|r| run_view(&self.base, id, r)).collect(),
            });
        }
        Ok(out)
    }
}

/// A link into Airflow's UI, each segment escaped (run ids hold `:` and `+`).
pub fn ui_url(base: &str, segments: &[&str]) -> String {
    match reqwest::Url::parse(base) {
        Ok(mut url) => {
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
            url.to_string()
        }
        Err(_) => base.to_string(),
    }
}

/// One run from the REST API's `DAGRunResponse`.
pub fn run_view(base: &str, dag_id: &str, r: &Value) -> DagRunView {
    let text = |k: &str| r[k].as_str().map(str::to_string);
    let run_id = text("dag_run_id").unwrap_or_default();
    DagRunView {
        url: ui_url(base, &["dags", dag_id, "runs", &run_id]),
        run_id,
        state: text("state").unwrap_or_else(|| "none".into()),
        run_type: text("run_type").unwrap_or_default(),
        queued_at: text("queued_at"),
        start_date: text("start_date"),
        end_date: text("end_date"),
    }
}

/// Polls Airflow until `shutdown` (returns at once when Airflow is disabled).
pub async fn run(config: Config, shared: Shared, viewed: Viewed, shutdown: CancellationToken) {
    if !config.airflow.enabled {
        return;
    }
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(h) => h,
        Err(e) => {
            state::update(&shared, |s| s.airflow.fail(format!("HTTP client: {e}")));
            return;
        }
    };
    let mut client = Client {
        http,
        base: launcher::base_url(&config),
        password_file: pipeline_cluster::Layout::new(&config).state.join(launcher::PASSWORDS_FILE),
        token: None,
    };
    let mut last = None::<std::time::Instant>;
    loop {
        let period = if viewed.recently(Duration::from_secs(60)) { 5 } else { 30 };
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(period)) {
            last = Some(std::time::Instant::now());
            match client.view().await {
                Ok(v) => state::update(&shared, |s| s.airflow.set(v)),
                Err(e) => state::update(&shared, |s| s.airflow.fail(e)),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_map_with_an_escaped_ui_link() {
        let r = json!({"dag_run_id": "manual__2026-12-04T16:22:00+00:00", "state": "success", "run_type": "manual",
                       "start_date": "2026-12-04T16:22:15Z", "end_date": null});
        let v = run_view("http://127.0.0.1:8082", "users_created_ingest", &r);
        assert_eq!(v.state, "success");
        assert_eq!(v.end_date, None);
        assert_eq!(v.url, "http://127.0.0.1:8082/dags/users_created_ingest/runs/manual__2026-12-04T16:22:00+00:00");
        let odd = run_view("http://127.0.0.1:8082", "d", &json!({"dag_run_id": "a/b c"}));
        assert_eq!(odd.url, "http://127.0.0.1:8082/dags/d/runs/a%2Fb%20c");
        assert_eq!(odd.state, "none");
    }
}
