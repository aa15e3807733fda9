//! Issue 17: Cassandra is SIGKILLed and brought back by the launcher; a keyspace and table
//! created through CQL right after are seen by the Cassandra connector inside the long-lived
//! Spark Connect server within seconds, and a write through Spark Connect lands in them. The
//! Connect server is never restarted.
//!
//! A test binary of its own: it kills the shared Cassandra, and cargo runs test binaries one
//! after another. Cassandra is brought back even when the test fails half-way.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly on purpose

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use pipeline_cluster::{Cluster, Service};
use pipeline_core::model::cql_create_keyspace;
use pipeline_core::Config;
use pipeline_testkit::{cassandra, config, connector_sees_table, spark_session, unique};
use spark_connect_rs::spark::write_operation::SaveMode;
use spark_connect_rs::SparkSession;
use uuid::Uuid;

/// How soon after its creation the connector must know a table, restart or not.
const SEEN_WITHIN: Duration = Duration::from_secs(15);
/// How long the test waits before calling the table never seen (longer than [`SEEN_WITHIN`],
/// so that a slow view is measured and reported rather than cut off).
const GIVE_UP_AFTER: Duration = Duration::from_secs(180);

/// Restarts Cassandra through the launcher if the test fails between the kill and the restart,
/// so that no later test binary finds it down.
struct BringBack(Option<Config>);

impl Drop for BringBack {
    fn drop(&mut self) {
        if let Some(cfg) = self.0.take() {
            let restart = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(Cluster::new(cfg).up(&[Service::Cassandra])).map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            });
            match restart.join() {
                Ok(Ok(())) => eprintln!("Cassandra brought back after the failure"),
                Ok(Err(e)) => eprintln!("could not bring Cassandra back: {e} (run `pipeline cluster up cassandra`)"),
                Err(_) => eprintln!("could not bring Cassandra back (run `pipeline cluster up cassandra`)"),
            }
        }
    }
}

async fn create_users_table(cfg: &Config, keyspace: &str) {
    let db = cassandra(cfg).await;
    db.query_unpaged(cql_create_keyspace(keyspace, 1), &[]).await.expect("create keyspace");
    db.query_unpaged(format!("CREATE TABLE {keyspace}.users (id uuid PRIMARY KEY, first_name text)"), &[])
        .await
        .expect("create table");
}

fn some_users(n: usize) -> Vec<(Uuid, String)> {
    let mut users: Vec<_> = (0..n).map(|i| (Uuid::new_v4(), format!("user{i}"))).collect();
    users.sort();
    users
}

/// Appends `users` to `keyspace.users` through the Cassandra connector in Spark Connect.
async fn write_through_spark(spark: &SparkSession, keyspace: &str, users: &[(Uuid, String)]) {
    let values: Vec<String> = users.iter().map(|(id, name)| format!("('{id}', '{name}')")).collect();
    spark
        .sql(&format!("SELECT * FROM VALUES {} AS t(id, first_name)", values.join(", ")))
        .await
        .expect("rows as a DataFrame")
        .write()
        .format("org.apache.spark.sql.cassandra")
        .option("keyspace", keyspace)
        .option("table", "users")
        .mode(SaveMode::Append)
        .save("")
        .await
        .expect("write through the Cassandra connector");
}

async fn users_in(cfg: &Config, keyspace: &str) -> Vec<(Uuid, String)> {
    let db = cassandra(cfg).await;
    let rows = db
        .query_unpaged(format!("SELECT id, first_name FROM {keyspace}.users"), &[])
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let mut got: Vec<(Uuid, String)> =
        rows.rows::<(Uuid, String)>().expect("typed rows").collect::<Result<_, _>>().expect("decode");
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cassandra_kill_and_restart_spark_writes_into_a_table_created_at_once() {
    let cfg = config();
    let cluster = Cluster::new(cfg.clone());
    let connect = cluster.running(Service::SparkConnect).expect("Spark Connect must be running (pipeline cluster up)");
    let spark = spark_session(&cfg, "pipeline-tests").await;

    // Before the kill: the connector's Cassandra session exists and works (a table created now
    // is seen and written), so what follows exercises that long-lived session, not a new one.
    let before = unique("it_restart");
    let seen_before = {
        create_users_table(&cfg, &before).await;
        let seen = connector_sees_table(&spark, &before, "users", GIVE_UP_AFTER).await;
        let users = some_users(5);
        write_through_spark(&spark, &before, &users).await;
        assert_eq!(users_in(&cfg, &before).await, users);
        seen
    };

    // SIGKILL Cassandra (its whole process group), then bring it back with the launcher.
    let victim = cluster.running(Service::Cassandra).expect("Cassandra must be running (pipeline cluster up)");
    let mut bring_back = BringBack(Some(cfg.clone()));
    killpg(Pid::from_raw(victim.pid), Signal::SIGKILL).expect("SIGKILL Cassandra");
    let killed = Instant::now();
    while victim.is_alive() {
        assert!(killed.elapsed() < Duration::from_secs(30), "Cassandra still alive 30 s after SIGKILL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.up(&[Service::Cassandra]).await.expect("the launcher brings Cassandra back");
    bring_back.0 = None;
    let restarted = cluster.running(Service::Cassandra).expect("Cassandra running again");
    assert_ne!(restarted, victim, "a new Cassandra process");
    eprintln!("Cassandra back {:.1} s after the SIGKILL", killed.elapsed().as_secs_f64());

    // At once: a new keyspace and table through CQL, then a write through Spark Connect.
    let after = unique("it_restart");
    create_users_table(&cfg, &after).await;
    let seen_after = connector_sees_table(&spark, &after, "users", GIVE_UP_AFTER).await;
    let users = some_users(25);
    write_through_spark(&spark, &after, &users).await;
    assert_eq!(users_in(&cfg, &after).await, users, "every row written through Spark is in Cassandra");

    eprintln!(
        "the connector saw a new table {:.1} s after its creation before the restart, {:.1} s after",
        seen_before.as_secs_f64(),
        seen_after.as_secs_f64()
    );
    assert!(seen_after < SEEN_WITHIN, "the connector saw the new table only after {seen_after:?}");
    assert_eq!(
        cluster.running(Service::SparkConnect),
        Some(connect),
        "the Spark Connect server must be the same process throughout"
    );

    let db = cassandra(&cfg).await;
    for keyspace in [before, after] {
        db.query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[]).await.expect("drop keyspace");
    }
}
