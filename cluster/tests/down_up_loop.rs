//! Issue 17, part 2: `cluster down X` returns only once X's process group is gone and its ports
//! are free, so `cluster down X && cluster up X` succeeds every time, for each JVM service (a
//! JVM takes a while to exit and used to be mistaken for a foreign process holding the port).
//!
//! Runs on a private mini-cluster (own state folder, free ports) beside the shared one,
//! DOWN_UP_ROUNDS times per service (5 unless set). A test binary of its own: a second Kafka,
//! Cassandra and Spark chain is too heavy to run beside other tests.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::Instant;

use pipeline_cluster::{Cluster, Outcome, Service};

#[path = "common/private.rs"]
mod private;
use private::{private_config, Teardown};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_then_up_succeeds_every_time_for_each_jvm_service() {
    let mut cfg = private_config("pipeline_it_down_up");
    cfg.cluster.memory.cassandra_heap = "512m".into();
    cfg.validate().expect("a valid private configuration");
    let rounds: usize = std::env::var("DOWN_UP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // The registry is left out: on a port other than its default it does not start (Quarkus
    // binds 8081 in spite of -Dquarkus.http.port), a launcher defect of its own.
    let jvm = [Service::Kafka, Service::Cassandra, Service::SparkMaster, Service::SparkWorker, Service::SparkConnect];
    let cluster = Cluster::new(cfg.clone());
    let _teardown = Teardown(&cluster);
    cluster.up(&jvm).await.expect("the private JVM services start");

    for service in jvm {
        let started = Instant::now();
        for round in 1..=rounds {
            let before =
                cluster.running(service).unwrap_or_else(|| panic!("{service} is running before round {round}"));
            let stopped = cluster.down(&[service]).unwrap_or_else(|e| panic!("{service} round {round}: down: {e}"));
            assert_eq!(stopped, vec![service], "round {round}");
            assert!(!before.is_alive(), "{service} round {round}: down returned while pid {} lives", before.pid);
            for port in service.ports(&cfg) {
                assert!(
                    pipeline_cluster::process::port_is_free(port),
                    "{service} round {round}: down returned while port {port} is taken"
                );
            }
            let outcome = cluster.up(&[service]).await.unwrap_or_else(|e| panic!("{service} round {round}: up: {e}"));
            assert!(
                outcome.iter().any(|(s, o)| *s == service && matches!(o, Outcome::Started { .. })),
                "{service} round {round}: {outcome:?}"
            );
            let after = cluster.running(service).unwrap_or_else(|| panic!("{service} running after round {round}"));
            assert_ne!(after, before, "{service} round {round}: a new process");
        }
        eprintln!("{service}: {rounds} x down + up in {:.0} s", started.elapsed().as_secs_f64());
    }
}
