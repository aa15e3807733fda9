//! Each real service through the Rust client the pipeline uses for it.

use std::time::Duration;

use pipeline_core::model::{cql_create_keyspace, cql_create_table, event_avro_schema, CreatedUserRow};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use pipeline_testkit::{cassandra, config, unique};

#[tokio::test]
async fn kafka_produce_and_consume_roundtrip() {
    let cfg = config();
    let topic = unique("it_kafka");
    pipeline_core::clients::kafka::create_topics(&cfg.kafka, &[&topic], 1).await.expect("create topic");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    let payload = format!("hello {topic}");
    let delivery = producer
        .send(FutureRecord::to(&topic).key("k1").payload(&payload), Duration::from_secs(10))
        .await
        .expect("delivery");
    assert_eq!((delivery.partition, delivery.offset), (0, 0));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
        .set("group.id", unique("it_group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a message within 30 s")
        .expect("recv");
    assert_eq!(msg.key(), Some(&b"k1"[..]));
    assert_eq!(msg.payload_view::<str>(), Some(Ok(payload.as_str())));
}

#[tokio::test]
async fn pipeline_topics_exist_with_configured_partitions() {
    let cfg = config();
    let bootstrap = cfg.kafka.bootstrap_servers.clone();
    let md = tokio::task::spawn_blocking(move || {
        let c: rdkafka::consumer::BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("client");
        c.fetch_metadata(None, Duration::from_secs(10)).expect("metadata")
    })
    .await
    .expect("join");
    for name in [&cfg.kafka.topic, &cfg.kafka.dead_letter_topic] {
        let topic = md.topics().iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("topic {name} missing"));
        assert_eq!(topic.partitions().len() as i32, cfg.kafka.partitions, "partitions of {name}");
    }
}

#[tokio::test]
async fn registry_registers_and_serves_the_event_schema_by_id() {
    let cfg = config();
    let subject = unique("it_subject");
    let http = reqwest::Client::new();
    let schema = event_avro_schema().to_string();
    let resp = http
        .post(format!("{}/subjects/{subject}/versions", cfg.registry.url))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .json(&json!({"schema": schema, "schemaType": "AVRO"}))
        .send()
        .await
        .expect("registry must be up");
    assert!(resp.status().is_success(), "register: {}", resp.status());
    let id = resp.json::<Value>().await.expect("json")["id"].as_i64().expect("id");

    let fetched: Value = http
        .get(format!("{}/schemas/ids/{id}", cfg.registry.url))
        .send()
        .await
        .expect("get by id")
        .json()
        .await
        .expect("json");
    let text = fetched["schema"].as_str().expect("schema text");
    let back: Value = serde_json::from_str(text).expect("schema is JSON");
    assert_eq!(back, event_avro_schema(), "the registry must return the schema we registered");

    // Registering the same schema again is idempotent: same id.
    let again: Value = http
        .post(format!("{}/subjects/{subject}/versions", cfg.registry.url))
        .json(&json!({"schema": schema}))
        .send()
        .await
        .expect("re-register")
        .json()
        .await
        .expect("json");
    assert_eq!(again["id"].as_i64(), Some(id));
}

#[tokio::test]
async fn cassandra_insert_and_select_with_the_model_table() {
    let cfg = config();
    let session = cassandra(&cfg).await;
    let keyspace = unique("it_ks");
    session.query_unpaged(cql_create_keyspace(&keyspace, 1), &[]).await.expect("keyspace");
    session
        .query_unpaged(cql_create_table(&keyspace, "created_users", CreatedUserRow::FIELDS), &[])
        .await
        .expect("table");
    let id = uuid::Uuid::new_v4();
    session
        .query_unpaged(
            format!(
                "INSERT INTO {keyspace}.created_users (id, first_name, last_name, email, age) VALUES (?, ?, ?, ?, ?)"
            ),
            (id, "Ada", "Lovelace", "ada@example.com", 36_i32),
        )
        .await
        .expect("insert");
    let rows = session
        .query_unpaged(format!("SELECT first_name, age FROM {keyspace}.created_users WHERE id = ?"), (id,))
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows");
    let (name, age): (String, i32) = rows.single_row().expect("one row");
    assert_eq!((name.as_str(), age), ("Ada", 36));
    session.query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[]).await.expect("drop");
}

#[tokio::test]
async fn postgres_insert_and_select_as_the_pipeline_role() {
    let cfg = config();
    let pg = &cfg.postgres;
    let password = pg.password().expect("password file written by cluster up");
    let (client, conn) = tokio_postgres::Config::new()
        .host(&pg.host)
        .port(pg.port)
        .user(&pg.user)
        .password(password)
        .dbname(&pg.database)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be up with the pipeline role");
    tokio::spawn(conn);
    let table = unique("it_pg");
    client.batch_execute(&format!("CREATE TABLE {table} (id uuid PRIMARY KEY, payload jsonb)")).await.expect("create");
    let id = uuid::Uuid::new_v4();
    let payload = json!({"name": "Grace"});
    client.execute(&format!("INSERT INTO {table} VALUES ($1, $2)"), &[&id, &payload]).await.expect("insert");
    let row = client.query_one(&format!("SELECT payload FROM {table} WHERE id = $1"), &[&id]).await.expect("select");
    assert_eq!(row.get::<_, Value>(0), payload);
    client.batch_execute(&format!("DROP TABLE {table}")).await.expect("drop");
}
