//! `up` twice is harmless, `down` leaves no process or port behind, a taken port is named.
//! These run on a private mini-cluster (own state folder and ports) beside the main one.

use std::net::{Ipv4Addr, TcpListener};

use pipeline_cluster::{Cluster, ClusterError, Outcome, Service};
use pipeline_core::Config;

use pipeline_testkit::{config, unique};

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port()
}

/// Stops the private mini-cluster and removes its state even when an assertion fails.
struct Teardown<'a>(&'a Cluster);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = self.0.down(&[]);
        let _ = std::fs::remove_dir_all(&self.0.layout().state);
    }
}

fn private_config() -> Config {
    let mut c = config();
    let state = std::env::temp_dir().join(unique("pipeline_it_state"));
    c.postgres.password_file = state.join("secrets/postgres.password");
    c.cluster.state_dir = state;
    c.postgres.port = free_port();
    c.kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    c.kafka.controller_port = free_port();
    c
}

#[tokio::test]
async fn up_twice_is_harmless_and_down_leaves_nothing_behind() {
    let cfg = private_config();
    let services = [Service::Postgres, Service::Kafka];
    let ports: Vec<u16> = services.iter().flat_map(|s| s.ports(&cfg)).collect();
    let cluster = Cluster::new(cfg);
    let _teardown = Teardown(&cluster);

    let first = cluster.up(&services).await.expect("first up");
    assert!(first.iter().all(|(_, o)| matches!(o, Outcome::Started { .. })), "{first:?}");
    let pids: Vec<_> = services.iter().map(|s| cluster.running(*s).expect("running")).collect();
    for port in &ports {
        assert!(!pipeline_cluster::process::port_is_free(*port), "port {port} should be in use");
    }

    let second = cluster.up(&services).await.expect("second up");
    assert!(second.iter().all(|(_, o)| *o == Outcome::AlreadyRunning), "{second:?}");
    let pids_again: Vec<_> = services.iter().map(|s| cluster.running(*s).expect("running")).collect();
    assert_eq!(pids, pids_again, "a second up must not restart anything");

    let mut stopped = cluster.down(&[]).expect("down");
    stopped.sort();
    assert_eq!(stopped, services.to_vec());
    for record in &pids {
        assert!(!record.is_alive(), "pid {} still alive", record.pid);
        assert!(!std::path::Path::new(&format!("/proc/{}", record.pid)).exists() || !record.is_alive());
    }
    for port in &ports {
        assert!(pipeline_cluster::process::port_is_free(*port), "port {port} still open after down");
    }
    assert!(cluster.down(&[]).expect("second down").is_empty(), "a second down finds nothing to stop");
}

#[tokio::test]
async fn a_taken_port_fails_up_with_the_service_name() {
    let mut cfg = private_config();
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = squatter.local_addr().expect("addr").port();
    cfg.postgres.port = port;
    let cluster = Cluster::new(cfg);
    let _teardown = Teardown(&cluster);
    let err = cluster.up(&[Service::Postgres]).await.expect_err("port is taken");
    assert!(matches!(err, ClusterError::PortInUse { service: Service::Postgres, port: p } if p == port), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("postgres") && message.contains(&port.to_string()), "{message}");
    assert!(cluster.running(Service::Postgres).is_none(), "nothing must be left running");
}
