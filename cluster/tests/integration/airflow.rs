//! Airflow against the running cluster: the DAGs parse, `airflow dags test` of each DAG does
//! the real work through the `pipeline` binary, the health DAG's two answers to a stopped
//! job, and the scheduler really scheduling. Needs the airflow-* services
//! (`pipeline cluster up`) and `make build` (the DAGs run the built `pipeline` binary).
//!
//! The Spark job is shared by every test of the workspace: the tests that stop or need it
//! take [`spark_job`], and a guard resubmits it whatever happens.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use pipeline_cluster::services::airflow;
use pipeline_cluster::Ctx;
use pipeline_core::Config;
use pipeline_testkit::eventually;
use serde_json::{json, Value};

const INGEST: &str = "users_created_ingest";
const HEALTH: &str = "users_pipeline_health";

/// Serialises the tests that depend on the shared Spark job's state.
pub(crate) fn spark_job() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

pub(crate) fn config() -> Config {
    pipeline_testkit::config()
}

/// The `pipeline` binary next to this test binary (target/<profile>/pipeline; `make build`).
pub(crate) fn pipeline_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").join("pipeline");
    assert!(bin.exists(), "{} is missing: run `make build` (cargo build --workspace) first", bin.display());
    bin
}

/// Exit code and combined output of a command.
pub(crate) struct Run {
    pub code: i32,
    pub output: String,
}

async fn run(mut cmd: tokio::process::Command, what: &str, timeout: Duration) -> Run {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
        .unwrap_or_else(|e| panic!("{what} could not run: {e}"));
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Run { code: out.status.code().unwrap_or(-1), output }
}

/// `airflow ARGS` with the services' environment, the DAGs running the built binary.
pub(crate) async fn airflow_cli(config: &Config, args: &[&str]) -> Run {
    let launch = airflow::cli(&Ctx::new(config.clone())).expect("Airflow's environment (run `make deps`)");
    let mut cmd = tokio::process::Command::new(&launch.program);
    cmd.args(args).envs(launch.env.iter().map(|(k, v)| (k, v))).env("PIPELINE_BIN", pipeline_bin());
    if let Some(cwd) = &launch.cwd {
        cmd.current_dir(cwd);
    }
    run(cmd, &format!("airflow {}", args.join(" ")), Duration::from_secs(300)).await
}

pub(crate) async fn pipeline(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(pipeline_bin());
    // The job's checkpoints resolve against the working dir: use the configured (absolute) one.
    cmd.args(args).env("RUST_LOG", "warn").env("PIPELINE__JOB__CHECKPOINT_DIR", config().job.checkpoint_dir);
    run(cmd, &format!("pipeline {}", args.join(" ")), Duration::from_secs(300)).await
}

/// Resubmits the Spark job when dropped (a failed assertion must not leave it stopped).
struct ResubmitOnDrop;

impl Drop for ResubmitOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(pipeline_bin())
            .arg("submit")
            .env("RUST_LOG", "warn")
            .env("PIPELINE__JOB__CHECKPOINT_DIR", config().job.checkpoint_dir)
            .output();
    }
}

/// `pipeline jobs status` exits 0 running, 3 degraded/failed/unreachable, 4 not submitted or
/// stopped; anything else is a failure of the command itself.
async fn job_running() -> bool {
    let status = pipeline(&["jobs", "status"]).await;
    assert!([0, 3, 4].contains(&status.code), "pipeline jobs status failed:\n{}", status.output);
    status.code == 0 && status.output.lines().any(|l| l.starts_with(&format!("RUNNING {} ", config().job.query_name)))
}

/// Audited users of the pipeline's topic.
pub(crate) async fn audited(config: &Config) -> i64 {
    let db = pipeline_testkit::audit_db(config).await;
    let row = db
        .query_one("SELECT count(*) FROM audit.users WHERE topic = $1", &[&config.kafka.topic])
        .await
        .expect("audit.users is readable (pipeline produce creates it)");
    row.get(0)
}

/// The REST API as the generated admin.
pub(crate) struct Api {
    base: String,
    client: reqwest::Client,
    token: String,
}

impl Api {
    pub(crate) async fn login(config: &Config) -> Api {
        let base = airflow::base_url(config);
        let client = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().expect("HTTP client");
        let password = admin_password(config);
        let resp = client
            .post(format!("{base}/auth/token"))
            .json(&json!({"username": airflow::ADMIN_USER, "password": password}))
            .send()
            .await
            .expect("Airflow's API server answers (pipeline cluster up)");
        assert!(resp.status().is_success(), "login failed: {}", resp.status());
        let body: Value = resp.json().await.expect("token JSON");
        let token = body["access_token"].as_str().expect("access_token").to_string();
        Api { base, client, token }
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}/api/v2{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        // A busy API server may drop a request: a status of 0 carries the error.
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (0, json!({ "error": format!("{path}: {e}") })),
        };
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn set_paused(&self, dag: &str, paused: bool) {
        let (status, body) =
            self.call(reqwest::Method::PATCH, &format!("/dags/{dag}"), Some(json!({"is_paused": paused}))).await;
        assert_eq!(status, 200, "pausing {dag}={paused}: {body}");
    }

    /// Runs of a DAG, newest first.
    pub(crate) async fn runs(&self, dag: &str) -> Vec<Value> {
        let (status, body) =
            self.call(reqwest::Method::GET, &format!("/dags/{dag}/dagRuns?order_by=-start_date&limit=50"), None).await;
        if status != 200 {
            eprintln!("runs of {dag}: HTTP {status} {body} (polling again)");
        }
        body["dag_runs"].as_array().cloned().unwrap_or_default()
    }

    async fn set_variable(&self, key: &str, value: &str) {
        let body = json!({"key": key, "value": value});
        let (status, _) = self.call(reqwest::Method::POST, "/variables", Some(body.clone())).await;
        if status == 409 {
            let (status, resp) = self.call(reqwest::Method::PATCH, &format!("/variables/{key}"), Some(body)).await;
            assert_eq!(status, 200, "variable {key}: {resp}");
        } else {
            assert!(status == 200 || status == 201, "variable {key}: HTTP {status}");
        }
    }

    async fn delete_variable(&self, key: &str) {
        let _ = self.call(reqwest::Method::DELETE, &format!("/variables/{key}"), None).await;
    }
}

pub(crate) fn admin_password(config: &Config) -> String {
    let path = config.cluster.state_dir.join(airflow::PASSWORDS_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the API server writes it on its first start)", path.display()));
    let users: Value = serde_json::from_str(&text).expect("passwords file is JSON");
    users[airflow::ADMIN_USER].as_str().expect("admin password").to_string()
}

#[tokio::test]
async fn both_dags_parse_without_import_errors() {
    let config = config();
    let errors = airflow_cli(&config, &["dags", "list-import-errors", "--output", "json"]).await;
    assert_eq!(errors.code, 0, "airflow dags list-import-errors failed:\n{}", errors.output);
    assert!(
        !errors.output.contains(".py\"") && !errors.output.contains("Traceback"),
        "import errors:\n{}",
        errors.output
    );
    let api = Api::login(&config).await;
    for dag in [INGEST, HEALTH] {
        let (status, body) = api.call(reqwest::Method::GET, &format!("/dags/{dag}"), None).await;
        assert_eq!(status, 200, "{dag} is not known to Airflow: {body}");
        let fileloc = body["fileloc"].as_str().unwrap_or_default();
        assert!(
            fileloc.starts_with(&*config.airflow.dags_folder.to_string_lossy()),
            "{dag} comes from {fileloc}, not from {}",
            config.airflow.dags_folder.display()
        );
    }
}

#[tokio::test]
async fn ingest_dag_audits_200_users_that_land_in_cassandra() {
    let config = config();
    let _job = spark_job().lock().await;
    let _guard = ResubmitOnDrop;
    let before = audited(&config).await;
    let test =
        airflow_cli(&config, &["dags", "test", INGEST, "--conf", r#"{"source": "synthetic", "count": 200}"#]).await;
    assert_eq!(test.code, 0, "airflow dags test {INGEST} failed:\n{}", test.output);
    assert!(test.output.contains("audited 200"), "the producer's summary is missing:\n{}", test.output);
    let after = audited(&config).await;
    assert!(after - before >= 200, "audited users went from {before} to {after}, expected at least 200 more");
    // The job lands them. Submitted after the produce: another test may have restarted the
    // in-memory registry, and the producer registers the schema the job reads.
    let submit = pipeline(&["submit"]).await;
    assert_eq!(submit.code, 0, "pipeline submit:\n{}", submit.output);

    eventually("pipeline verify OK (every audited user in Cassandra)", Duration::from_secs(180), || async {
        let verify = pipeline(&["verify"]).await;
        (verify.code == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn health_dag_passes_then_fails_or_restarts_a_stopped_job() {
    let config = config();
    let _job = spark_job().lock().await;
    let _guard = ResubmitOnDrop;
    // One user first: it registers the schema `submit` needs, should another test have
    // restarted the in-memory registry.
    let produce = pipeline(&["produce", "--source", "synthetic", "--count", "1"]).await;
    assert_eq!(produce.code, 0, "pipeline produce:\n{}", produce.output);
    let submit = pipeline(&["submit"]).await;
    assert_eq!(submit.code, 0, "pipeline submit:\n{}", submit.output);

    let healthy = airflow_cli(&config, &["dags", "test", HEALTH]).await;
    assert_eq!(healthy.code, 0, "the health DAG fails on a running job:\n{}", healthy.output);

    let stop = pipeline(&["jobs", "stop"]).await;
    assert_eq!(stop.code, 0, "pipeline jobs stop:\n{}", stop.output);
    assert!(!job_running().await, "the job still runs after `pipeline jobs stop`");

    let fail = airflow_cli(&config, &["dags", "test", HEALTH, "--conf", r#"{"on_job_stopped": "fail"}"#]).await;
    assert_ne!(fail.code, 0, "on_job_stopped=fail passed on a stopped job:\n{}", fail.output);
    assert!(fail.output.contains("the Spark job is stopped"), "no stopped-job message:\n{}", fail.output);
    assert!(!job_running().await, "on_job_stopped=fail must leave the job stopped");

    let restart = airflow_cli(&config, &["dags", "test", HEALTH]).await;
    assert_eq!(restart.code, 0, "on_job_stopped=restart (the default) failed:\n{}", restart.output);
    // "restarted": the DAG submitted the job. "running": something else on this shared cluster
    // resubmitted it in between (the DAG then rightly leaves it alone).
    assert!(
        restart.output.contains("Returned value was: restarted")
            || restart.output.contains("Returned value was: running"),
        "the DAG reported neither a restart nor a running job:\n{}",
        restart.output
    );
    assert!(job_running().await, "the health DAG did not bring the job back");
}

/// The scheduler and the UI together (unpausing is shared state): two scheduled runs within
/// 150 s, then the browser sees them.
#[tokio::test]
async fn the_scheduler_runs_the_unpaused_ingest_dag_and_the_ui_shows_it() {
    let config = config();
    let api = Api::login(&config).await;
    // Scheduled runs use the DAG's defaults: the synthetic source here (no internet), 50 users.
    api.set_variable("users_created_ingest_source", "synthetic").await;
    api.set_variable("users_created_ingest_count", "50").await;
    let since = chrono::Utc::now();
    let before = audited(&config).await;
    api.set_paused(INGEST, false).await;

    let scheduled_successes = || async {
        let runs = api.runs(INGEST).await;
        let n = runs
            .iter()
            .filter(|r| r["run_type"] == "scheduled" && r["state"] == "success")
            .filter(|r| {
                r["start_date"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|t| t >= since)
            })
            .count();
        (n >= 2).then_some(n)
    };
    let waited = tokio::time::timeout(Duration::from_secs(150), async {
        loop {
            if let Some(n) = scheduled_successes().await {
                return n;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
    api.set_paused(INGEST, true).await;
    api.delete_variable("users_created_ingest_source").await;
    api.delete_variable("users_created_ingest_count").await;
    let n = waited.expect("fewer than 2 successful scheduled runs of users_created_ingest within 150 s");
    let after = audited(&config).await;
    assert!(after - before >= 100, "{n} scheduled runs, but audited users went from {before} to {after} (< 2 x 50)");
    crate::airflow_ui::dag_list_shows_both_dags_and_a_success(&config).await;
}
