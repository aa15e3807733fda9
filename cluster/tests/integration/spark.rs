//! The Spark cluster through spark-connect-rs: SQL, streaming, and the connector jars wired
//! end to end (Kafka source -> Cassandra connector).

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use spark_connect_rs::spark::write_operation::SaveMode;
use spark_connect_rs::streaming::{OutputMode, Trigger};
use spark_connect_rs::{SparkSession, SparkSessionBuilder};

use pipeline_testkit::{cassandra, config, eventually, unique};

async fn session() -> SparkSession {
    let cfg = config();
    let url = format!("{}/;user_id=pipeline-tests", cfg.spark.connect_url);
    SparkSessionBuilder::remote(&url).build().await.expect("Spark Connect must be up (pipeline cluster up)")
}

async fn count(spark: &SparkSession, table: &str) -> i64 {
    let batch =
        spark.sql(&format!("SELECT count(*) AS n FROM {table}")).await.expect("sql").collect().await.expect("collect");
    let col = batch.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().expect("bigint count");
    col.value(0)
}

#[tokio::test]
async fn spark_connect_runs_sql_on_the_cluster() {
    pipeline_cluster::services::spark_select_one(&config().spark.connect_url).await.expect("SELECT 1");
    let spark = session().await;
    let version = spark.version().await.expect("version");
    assert!(version.starts_with("3.5."), "Spark {version}");
    // The work runs on the standalone cluster, not in local mode.
    let master = spark.conf().get("spark.master", None).await.expect("conf");
    assert_eq!(master, config().spark.master_url);
}

#[tokio::test]
async fn rate_source_to_memory_sink_makes_progress() {
    let spark = session().await;
    let name = unique("it_rate");
    let query = spark
        .read_stream()
        .format("rate")
        .option("rowsPerSecond", "20")
        .load(None)
        .expect("rate source")
        .write_stream()
        .format("memory")
        .query_name(&name)
        .output_mode(OutputMode::Append)
        .trigger(Trigger::ProcessingTimeInterval("1 second".into()))
        .start(None)
        .await
        .expect("start streaming query");
    let rows = eventually("rows in the memory sink", Duration::from_secs(90), || async {
        let n = count(&spark, &name).await;
        (n > 0).then_some(n)
    })
    .await;
    assert!(rows > 0);
    assert!(query.is_active().await.expect("is_active"));
    query.stop().await.expect("stop");
    assert!(!query.is_active().await.expect("is_active after stop"));
}

#[tokio::test]
async fn kafka_batch_read_written_to_cassandra_by_the_connector() {
    let cfg = config();
    let topic = unique("it_k2c");
    let keyspace = unique("it_k2c");
    pipeline_core::clients::kafka::create_topics(&cfg.kafka, &[&topic], 2).await.expect("topic");

    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &cfg.kafka.bootstrap_servers).create().expect("producer");
    let mut sent = Vec::new();
    for i in 0..25 {
        let id = uuid::Uuid::new_v4();
        let value = serde_json::json!({"first_name": format!("user{i}")}).to_string();
        producer
            .send(FutureRecord::to(&topic).key(&id.to_string()).payload(&value), Duration::from_secs(10))
            .await
            .expect("delivery");
        sent.push((id, format!("user{i}")));
    }

    let db = cassandra(&cfg).await;
    db.query_unpaged(pipeline_core::model::cql_create_keyspace(&keyspace, 1), &[]).await.expect("keyspace");
    db.query_unpaged(format!("CREATE TABLE {keyspace}.users (id uuid PRIMARY KEY, first_name text)"), &[])
        .await
        .expect("table");

    let spark = session().await;
    spark
        .read()
        .format("kafka")
        .option("kafka.bootstrap.servers", &cfg.kafka.bootstrap_servers)
        .option("subscribe", &topic)
        .option("startingOffsets", "earliest")
        .load([])
        .expect("kafka source")
        .select_expr([
            "CAST(key AS STRING) AS id",
            "get_json_object(CAST(value AS STRING), '$.first_name') AS first_name",
        ])
        .write()
        .format("org.apache.spark.sql.cassandra")
        .option("keyspace", &keyspace)
        .option("table", "users")
        .mode(SaveMode::Append)
        .save("")
        .await
        .expect("write through the Cassandra connector");

    let rows = db
        .query_unpaged(format!("SELECT id, first_name FROM {keyspace}.users"), &[])
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let mut got: Vec<(uuid::Uuid, String)> =
        rows.rows::<(uuid::Uuid, String)>().expect("typed rows").collect::<Result<_, _>>().expect("decode");
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
    db.query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[]).await.expect("drop");
}
