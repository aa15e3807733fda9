//! The supervisor brings back a service that dies, and never one the user stopped.
//!
//! Against the running cluster (with its `supervisor` service): the schema registry's process
//! group is SIGKILLed; `pipeline cluster status`, run as a separate process as a user would,
//! must show it healthy again with one more restart and its last exit. Then `cluster down
//! registry` must keep it down through several supervisor checks, and `cluster up registry`
//! brings it back. A test binary of its own: it stops a shared service.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pipeline_cluster::supervise::RestartRecord;
use pipeline_cluster::{Cluster, Service};
use pipeline_testkit::{config, pipeline_env};

/// `pipeline cluster status` from another process: (healthy, restarts) of the registry row.
fn status_row(service: &str) -> (bool, u32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["cluster", "status"])
        .envs(pipeline_env(&config()))
        .output()
        .expect("run pipeline cluster status");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = text.lines().find(|l| l.starts_with(&format!("{service} "))).unwrap_or_default().to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    let healthy = cols.get(3) == Some(&"yes");
    let restarts = cols.get(5).and_then(|c| c.parse().ok()).unwrap_or(0);
    (healthy, restarts, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_comes_back_and_a_stopped_one_stays_down() {
    let cfg = config();
    let cluster = Cluster::new(cfg.clone());
    assert!(cluster.running(Service::Supervisor).is_some(), "the supervisor must run (pipeline cluster up)");
    cluster.up(&[Service::Registry]).await.expect("registry up");
    let record_path = cluster.layout().run_dir().join("registry.restarts.json");
    let before = RestartRecord::read(&record_path).restarts;

    // SIGKILL the whole group, as a crash would, and type nothing afterwards.
    let victim = cluster.running(Service::Registry).expect("registry running");
    killpg(Pid::from_raw(victim.pid), Signal::SIGKILL).expect("kill");
    let killed = Instant::now();
    loop {
        let (healthy, restarts, text) = status_row("registry");
        if healthy && restarts > before {
            assert!(text.contains("last exit: process"), "status names the last exit:\n{text}");
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(120), "registry not back within 120 s:\n{text}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let recovered = killed.elapsed();
    assert_ne!(cluster.running(Service::Registry).map(|r| r.pid), Some(victim.pid), "a new process");
    println!("registry back {:.1} s after SIGKILL", recovered.as_secs_f64());

    // Stopped on purpose: it stays down through several checks of the supervisor.
    cluster.down(&[Service::Registry]).expect("down");
    let check = Duration::from_millis(cfg.cluster.supervisor.check_interval_ms);
    tokio::time::sleep(check * 4 + Duration::from_millis(cfg.cluster.restart.backoff_base_ms)).await;
    assert!(cluster.running(Service::Registry).is_none(), "a stopped service must stay stopped");
    assert_eq!(RestartRecord::read(&record_path).restarts, before + 1, "no restart after `down`");
    cluster.up(&[Service::Registry]).await.expect("registry up again");
}
