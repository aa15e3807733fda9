//! Spark Connect requires the cluster's bearer token. `pipeline submit` without it or with a
//! wrong one is refused with a clear message (no panic, no hang); with it the job's session
//! answers; the token appears in no log file under the state folder.
//!
//! Runs against the cluster `pipeline cluster up` started (its state folder holds the token).

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use pipeline_core::Config;
use pipeline_testkit::{isolated, pipeline_env, unique};

/// The token of the running cluster; its absence means the server runs without authentication.
fn cluster_token(cfg: &Config) -> String {
    let file = cfg.connect_token_file();
    let token = pipeline_core::connect::read_token(&file).expect("readable token file");
    token.unwrap_or_else(|| {
        panic!(
            "{} does not exist: start the cluster with `pipeline cluster up`, which requires the token",
            file.display()
        )
    })
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// `jobs status --json` reached the job's Connect session: whatever the job's state (the
/// test's checkpoint folder is new, so usually "not_submitted", exit 4), it is not
/// "unreachable" and nothing was refused.
fn assert_reached_spark(run: &Run) {
    assert!(!run.stderr.contains("refused"), "with the token: {}", run.stderr);
    let status: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("jobs status --json printed no JSON ({e}): {}\n{}", run.stdout, run.stderr));
    assert_ne!(status["state"], "unreachable", "with the token: {status}");
}

/// `pipeline <args>` with the token file `token_file` (None: the cluster's), failing the test
/// if it has not finished within 90 s: a refused token must not hang.
async fn pipeline(cfg: &Config, args: &[&str], token_file: Option<&Path>) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipeline"));
    cmd.args(args).envs(pipeline_env(cfg)).env_remove("PIPELINE__SPARK__CONNECT_TOKEN").kill_on_drop(true);
    if let Some(file) = token_file {
        cmd.env("PIPELINE__SPARK__CONNECT_TOKEN_FILE", file);
    }
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("`pipeline {}` did not finish within 90 s", args.join(" ")))
        .expect("run pipeline");
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_refused(run: &Run, reason: &str) {
    assert!(!run.success, "submit must fail: {}", run.stderr);
    assert!(run.stderr.contains(&format!("Spark Connect refused the token: {reason}")), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "a refusal is an error, not a panic: {}", run.stderr);
}

#[tokio::test]
async fn submit_is_refused_without_the_token_or_with_a_wrong_one_and_works_with_it() {
    let cfg = isolated("it_auth");
    let token = cluster_token(&cfg);
    let dir = std::env::temp_dir().join(unique("it_auth"));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let missing = dir.join("missing.token");
    let run = pipeline(&cfg, &["submit"], Some(&missing)).await;
    assert_refused(&run, "no bearer token");
    assert!(run.stderr.contains(&missing.display().to_string()), "names the token file: {}", run.stderr);

    let wrong = dir.join("wrong.token");
    let wrong_token = format!("{token}x");
    std::fs::write(&wrong, &wrong_token).expect("write wrong token");
    let run = pipeline(&cfg, &["submit"], Some(&wrong)).await;
    assert_refused(&run, "wrong bearer token");
    assert!(!run.stderr.contains(&wrong_token), "the token must not be printed: {}", run.stderr);

    // The same command line with the cluster's token gets through to Spark.
    let run = pipeline(&cfg, &["jobs", "status", "--json"], None).await;
    assert_reached_spark(&run);
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

/// Log files under `dir`: everything in a `logs` folder (the services' logs, Cassandra's own)
/// and the executors' stdout/stderr in the worker's folder; the secrets are not logs.
fn log_files(dir: &Path, in_logs: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && name != "secrets" {
            log_files(&path, in_logs || name == "logs", out);
        } else if kind.is_file() && (in_logs || name == "stdout" || name == "stderr") {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn the_token_is_in_no_log_file_of_the_state_folder() {
    let cfg = pipeline_testkit::config();
    let token = cluster_token(&cfg);
    // A call with the token first, so that there is something to leak.
    let run = pipeline(&cfg, &["jobs", "status", "--json"], None).await;
    assert_reached_spark(&run);

    let mut files = Vec::new();
    log_files(&cfg.cluster.state_dir, false, &mut files);
    let connect_log = cfg.cluster.state_dir.join("logs/spark-connect.log");
    assert!(files.contains(&connect_log), "no {} among {files:?}", connect_log.display());
    let server = std::fs::read_to_string(&connect_log).expect("read the Connect server log");
    assert!(server.contains("requires a bearer token"), "the server log shows no token interceptor");
    let leaking: Vec<_> = files
        .iter()
        .filter(|f| std::fs::read(f).is_ok_and(|bytes| bytes.windows(token.len()).any(|w| w == token.as_bytes())))
        .collect();
    assert!(leaking.is_empty(), "the Spark Connect token appears in {leaking:?}");
}
