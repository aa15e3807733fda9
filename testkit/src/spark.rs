//! Spark Connect helpers: a session, and waiting for the Cassandra connector's view of a table.

use std::time::{Duration, Instant};

use pipeline_core::Config;
use spark_connect_rs::{SparkSession, SparkSessionBuilder};

/// A Spark Connect session of the tests (`user_id` names them in the server's UI).
pub async fn spark_session(config: &Config, user: &str) -> SparkSession {
    let url = pipeline_core::connect::connect_url(config, user, None).expect("Spark Connect URL");
    SparkSessionBuilder::remote(url.secret()).build().await.expect("Spark Connect must be up (pipeline cluster up)")
}

/// Waits until the Cassandra connector inside the Spark Connect server knows `keyspace.table`,
/// and returns how long that took.
///
/// A table created through CQL reaches the connector's schema view a moment later: the Java
/// driver in the server learns about it from a schema-change event and refreshes its metadata
/// after a debounce window. A test that creates a table and writes into it through Spark at once
/// must wait for that view instead of relying on luck. The probe is the very look-up a read or
/// write of the `org.apache.spark.sql.cassandra` source does (the source's `getTable`, run when
/// Spark analyses the plan); "Couldn't find ..." means "not yet", any other error fails.
pub async fn connector_sees_table(spark: &SparkSession, keyspace: &str, table: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let probe = spark
            .read()
            .format("org.apache.spark.sql.cassandra")
            .option("keyspace", keyspace)
            .option("table", table)
            .load([]);
        let outcome = match probe {
            Ok(df) => df.columns().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return start.elapsed(),
            Err(e) if e.to_string().contains("Couldn't find") => {
                assert!(
                    start.elapsed() < timeout,
                    "the Cassandra connector in Spark Connect did not see {keyspace}.{table} within {timeout:?}: {}",
                    e.to_string().lines().next().unwrap_or_default()
                );
            }
            Err(e) => panic!("looking up {keyspace}.{table} through the Cassandra connector: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
