//! The Airflow section: a DAG run triggered through Airflow's REST API shows on the page.

use std::time::{Duration, Instant};

use pipeline_core::Config;
use serde_json::Value;

use crate::{eval, eval_json, serial, wait_for, Fixture};

/// Airflow's REST API as the generated admin (the password the launcher's Airflow wrote).
async fn airflow_token(config: &Config, http: &reqwest::Client) -> String {
    let path = config.cluster.state_dir.join(pipeline_cluster::services::airflow::PASSWORDS_FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (is Airflow up?)", path.display()));
    let users: Value = serde_json::from_str(&text).unwrap();
    let body = serde_json::json!({"username": "admin", "password": users["admin"]});
    let base = pipeline_cluster::services::airflow::base_url(config);
    let resp: Value = http.post(format!("{base}/auth/token")).json(&body).send().await.unwrap().json().await.unwrap();
    resp["access_token"].as_str().expect("an Airflow token").to_string()
}

/// A GET's body as text.
async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// A run triggered through Airflow's API appears on the page (row, state, link) and in
/// /api/airflow and /metrics; with Airflow disabled the section is hidden. The run is made on
/// the paused ingest DAG, so it stays queued and is deleted at the end.
#[test]
fn a_triggered_dag_run_shows_with_its_state_and_link() {
    let _serial = serial();
    let started = Instant::now();
    let f = Fixture::start();
    println!("page ready after {:.1} s", started.elapsed().as_secs_f64());
    assert!(f.config.airflow.enabled, "this test needs Airflow (airflow.enabled in conf/default.toml)");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let token = f.rt.block_on(airflow_token(&f.config, &http));
    let base = pipeline_cluster::services::airflow::base_url(&f.config);
    let dag = "users_created_ingest";
    let run_id = pipeline_testkit::unique("dashboard_run");
    let runs = format!("{base}/api/v2/dags/{dag}/dagRuns");
    let row = format!("[data-testid=airflow-run][data-run-id=\"{run_id}\"]");
    let present = |f: &Fixture| eval(&f.tab, &format!("!!document.querySelector('{row}')")) == Value::Bool(true);
    wait_for("the Airflow section", Duration::from_secs(20), || {
        (eval(&f.tab, "document.querySelectorAll('[data-testid=airflow-run]').length").as_i64()? > 0).then_some(())
    });
    assert!(!present(&f), "the run is not on the page before it is triggered");

    let body = serde_json::json!({"dag_run_id": run_id, "logical_date": null});
    let (status, text) = f.rt.block_on(async {
        let r = http.post(&runs).bearer_auth(&token).json(&body).send().await.unwrap();
        (r.status(), r.text().await.unwrap_or_default())
    });
    assert!(status.is_success(), "triggering {dag}: {status} {text}");
    let triggered_at = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("the triggered run on the page", Duration::from_secs(20), || present(&f).then_some(()));
        println!("DAG run shown {:.1} s after the trigger", triggered_at.elapsed().as_secs_f64());
        let cells = eval_json(
            &f.tab,
            &format!("Array.from(document.querySelector('{row}').children).map(function(c){{return c.textContent}})"),
        );
        let state = cells[4].as_str().unwrap_or_default().to_string();
        assert!(["queued", "running", "success", "failed"].contains(&state.as_str()), "run state shown: {cells}");
        let href = eval(&f.tab, &format!("document.querySelector('{row} a[href*=\"/runs/\"]').href"));
        assert_eq!(href.as_str(), Some(format!("{base}/dags/{dag}/runs/{run_id}").as_str()), "link to the run");
        let api: Value =
            serde_json::from_str(&f.rt.block_on(get_text(&http, &format!("http://{}/api/airflow", f.addr))))
                .expect("/api/airflow is JSON");
        let listed = api["data"]["dags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["runs"].as_array().is_some_and(|r| r.iter().any(|r| r["run_id"] == run_id.as_str())));
        assert!(listed, "/api/airflow lists the run: {api}");
        let metrics = f.rt.block_on(get_text(&http, &format!("http://{}/metrics", f.addr)));
        let gauge = format!("pipeline_airflow_dag_runs{{dag=\"{dag}\",state=\"{state}\"}}");
        assert!(metrics.contains(&gauge), "{gauge} in /metrics:\n{metrics}");
    }));
    let deleted = f.rt.block_on(async { http.delete(format!("{runs}/{run_id}")).bearer_auth(&token).send().await });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(deleted.is_ok_and(|r| r.status().is_success()), "the test's run is deleted");
    let errors = f.page_errors();
    assert!(errors.is_empty(), "errors on the page: {errors:#?}");
    println!("run checked after {:.1} s", started.elapsed().as_secs_f64());

    // Without Airflow the section stays hidden: a second dashboard in this process, same tab,
    // checked once its first snapshot is drawn.
    let mut config = f.config.clone();
    config.airflow.enabled = false;
    let listener = f.rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    f.rt.spawn(pipeline_dashboard::serve(config, listener, stop.clone()));
    f.tab.navigate_to(&format!("http://{addr}/")).unwrap().wait_until_navigated().unwrap();
    wait_for("the second page's first snapshot", Duration::from_secs(20), || {
        eval(&f.tab, "document.getElementById('status').textContent").as_str()?.starts_with("updated").then_some(())
    });
    assert_eq!(eval(&f.tab, "document.getElementById('airflow').hidden"), Value::Bool(true), "hidden without Airflow");
    assert_eq!(eval(&f.tab, "document.querySelectorAll('[data-testid=airflow-run]').length").as_i64(), Some(0));
    stop.cancel();
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}
