//! A private mini-cluster for launcher tests: its own state folder and every port of the
//! services it may start moved to a free one, so it never meets the shared cluster.

use std::net::{Ipv4Addr, TcpListener};

use pipeline_cluster::Cluster;
use pipeline_core::Config;
use pipeline_testkit::{config, unique};

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind").local_addr().expect("addr").port()
}

/// Stops the private mini-cluster and removes its state even when an assertion fails.
pub struct Teardown<'a>(pub &'a Cluster);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let _ = self.0.down(&[]);
        let _ = std::fs::remove_dir_all(&self.0.layout().state);
    }
}

/// A new temporary state folder named after `prefix`, and free ports for every service.
pub fn private_config(prefix: &str) -> Config {
    let mut c = config();
    let state = std::env::temp_dir().join(unique(prefix));
    c.postgres.password_file = state.join("secrets/postgres.password");
    c.cluster.state_dir = state;
    c.postgres.port = free_port();
    c.kafka.bootstrap_servers = format!("127.0.0.1:{}", free_port());
    c.kafka.controller_port = free_port();
    c.cassandra.contact_points = vec![pipeline_core::config::HostPort { host: "127.0.0.1".into(), port: free_port() }];
    c.cassandra.storage_port = free_port();
    c.cassandra.jmx_port = free_port();
    c.spark.master_url = format!("spark://127.0.0.1:{}", free_port());
    c.spark.master_ui_port = free_port();
    c.spark.worker_ui_port = free_port();
    c.spark.connect_url = format!("sc://127.0.0.1:{}", free_port());
    c.spark.app_ui_port = free_port();
    c.cluster.supervisor.metrics_addr = (Ipv4Addr::LOCALHOST, free_port()).into();
    c
}
