//! An independent statement of what a row must hold, written in Rust (not SQL), plus helpers
//! to set up a test's own topic, keyspace and job names.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use pipeline_core::config::SourceKind;
use pipeline_core::model::UserEvent;
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_producer::{run, ProduceOptions};
use pipeline_testkit::{create_topic, read_topic};
use uuid::Uuid;

/// A row of `created_users` as read back from Cassandra.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct Row {
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub gender: Option<String>,
    pub email: String,
    pub username: String,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub post_code: Option<String>,
    pub dob: Option<DateTime<Utc>>,
    pub registered_date: Option<DateTime<Utc>>,
    pub picture: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub age: Option<i32>,
    pub email_domain: Option<String>,
    pub nationality: Option<String>,
    pub produced_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
    pub engine: String,
}

pub const SELECT_ROWS: &str = "SELECT id, first_name, last_name, gender, email, username, phone, address, post_code, \
     dob, registered_date, picture, \"timestamp\", age, email_domain, nationality, produced_at, processed_at, engine";

/// Cassandra keeps milliseconds.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The row an event must become (engine and processed_at are the engine's own).
pub fn expected(e: &UserEvent, engine: &str, processed_at: DateTime<Utc>) -> Row {
    let street = [e.street_number.map(|n| n.to_string()), e.street_name.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let parts: Vec<String> =
        [Some(street.trim().to_string()).filter(|s| !s.is_empty()), e.city.clone(), e.state.clone(), e.country.clone()]
            .into_iter()
            .flatten()
            .collect();
    let age = e.dob.map(|dob| {
        let f = e.fetched_at;
        let before_birthday = (f.month(), f.day()) < (dob.month(), dob.day());
        f.year() - dob.year() - i32::from(before_birthday)
    });
    Row {
        id: e.id,
        first_name: e.first_name.clone(),
        last_name: e.last_name.clone(),
        gender: e.gender.clone(),
        email: e.email.clone(),
        username: e.username.clone(),
        phone: e.phone.clone(),
        address: (!parts.is_empty()).then(|| parts.join(", ")),
        post_code: e.post_code.clone(),
        dob: e.dob.map(ms),
        registered_date: e.registered_date.map(ms),
        picture: e.picture.clone(),
        timestamp: ms(e.fetched_at),
        age,
        email_domain: e.email.split_once('@').map(|(_, d)| d.to_lowercase()).filter(|d| !d.is_empty()),
        nationality: e.nat.as_ref().map(|n| n.to_uppercase()),
        produced_at: ms(e.produced_at),
        processed_at,
        engine: engine.to_string(),
    }
}

/// A configuration of the test's own (see [`pipeline_testkit::isolated`]), with a short trigger.
pub fn isolated(prefix: &str) -> Config {
    let mut c = pipeline_testkit::isolated(prefix);
    c.job.trigger_interval = "1 second".into();
    c
}

pub async fn create_topics(config: &Config) {
    create_topic(config, &config.kafka.topic, 3).await;
    create_topic(config, &config.kafka.dead_letter_topic, 1).await;
}

/// Produces `count` synthetic users through the real producer.
pub async fn produce(config: &Config, count: u64, seed: u64) {
    let opts = ProduceOptions {
        source: SourceKind::Synthetic,
        count: Some(count),
        rate: None,
        batch: 500,
        interval: None,
        seed,
    };
    let summary = run(config, opts, CancellationToken::new(), None).await.expect("producer run");
    assert_eq!(summary.published, count, "{summary:?}");
}

/// Every valid event on the topic, decoded with the registry, by id.
pub async fn events_on_topic(config: &Config) -> HashMap<Uuid, UserEvent> {
    let registry = pipeline_core::registry::RegistryClient::from_config(&config.registry).expect("registry");
    let mut out = HashMap::new();
    for r in read_topic(config, &config.kafka.topic).await {
        let Some(value) = r.value else { continue };
        let Ok((id, payload)) = pipeline_core::registry::unframe(&value) else { continue };
        let Ok(text) = registry.schema_by_id(id).await else { continue };
        let schema = apache_avro::Schema::parse_str(&text).expect("schema");
        let Ok(datum) = apache_avro::from_avro_datum(&schema, &mut &payload[..], None) else { continue };
        if let Ok(e) = UserEvent::from_avro(&datum) {
            out.insert(e.id, e);
        }
    }
    out
}

/// Every row of the test's table.
pub async fn rows(config: &Config) -> Vec<Row> {
    let db = pipeline_testkit::cassandra(config).await;
    let mut pager = db
        .query_iter(format!("{SELECT_ROWS} FROM {}.{}", config.cassandra.keyspace, config.cassandra.table), &[])
        .await
        .expect("select rows")
        .rows_stream::<Row>()
        .expect("row type");
    let mut out = Vec::new();
    use futures::StreamExt;
    while let Some(row) = pager.next().await {
        out.push(row.expect("row"));
    }
    out
}

pub async fn row_count(config: &Config) -> usize {
    rows(config).await.len()
}

/// Waits until the table holds `n` rows.
pub async fn wait_for_rows(config: &Config, n: usize, timeout: Duration) {
    pipeline_testkit::eventually(&format!("{n} rows in Cassandra"), timeout, || async {
        let got = row_count(config).await;
        assert!(got <= n, "more rows than produced: {got} > {n}");
        (got == n).then_some(())
    })
    .await;
}

/// Checks every row against the oracle; returns the rows by id.
pub fn check_rows(rows: &[Row], events: &HashMap<Uuid, UserEvent>, engine: &str) -> HashMap<Uuid, Row> {
    let mut by_id = HashMap::new();
    for row in rows {
        let event = events.get(&row.id).unwrap_or_else(|| panic!("row {} was never produced", row.id));
        let want = expected(event, engine, row.processed_at);
        assert_eq!(row, &want, "row {} differs from the oracle", row.id);
        assert!(row.processed_at >= ms(event.produced_at), "processed before produced: {}", row.id);
        by_id.insert(row.id, row.clone());
    }
    by_id
}

/// Ten malformed messages of different shapes, each with a word its dead-letter reason must
/// contain. Sent beside valid users to check that nothing is dropped silently.
pub async fn send_bad_messages(config: &Config) -> Vec<&'static str> {
    use apache_avro::types::Value as Avro;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let schema_id = pipeline_producer::register_event_schema(config).await.expect("schema");
    let schema = apache_avro::Schema::parse(&pipeline_core::model::event_avro_schema()).expect("schema");
    let mut source: pipeline_producer::source::Source =
        pipeline_producer::source::synthetic::SyntheticSource::new(rand::random::<u64>() | 1).into();
    let users = source.fetch(3).await.expect("users").users;
    let now = Utc::now();
    let event = |i: usize| {
        pipeline_producer::normalize::normalize(users[i].clone(), "synthetic", now, now).expect("event").event
    };
    let framed =
        |v: Avro| pipeline_core::registry::frame(schema_id, &apache_avro::to_avro_datum(&schema, v).expect("encode"));
    let with = |mut e: UserEvent, f: &dyn Fn(&mut UserEvent)| {
        f(&mut e);
        e
    };
    let bad_email = framed(with(event(0), &|e| e.email = "not-an-address".into()).to_avro());
    let blank_name = framed(with(event(1), &|e| e.first_name = "   ".into()).to_avro());
    let mut bad_id_fields = match event(2).to_avro() {
        Avro::Record(f) => f,
        _ => unreachable!("records encode as records"),
    };
    bad_id_fields[0].1 = Avro::String("not-a-uuid".into());
    let bad_id = pipeline_core::registry::frame(
        schema_id,
        &apache_avro::to_avro_datum(&schema, Avro::Record(bad_id_fields)).unwrap_or_else(|_| vec![0xFF, 0xFF]),
    );

    // (key, value, a phrase the dead-letter reason must contain)
    type Case = (Option<&'static str>, Option<Vec<u8>>, &'static str);
    let cases: Vec<Case> = vec![
        (Some("json"), Some(br#"{"id": "not avro"}"#.to_vec()), "not registry-framed"),
        (Some("empty"), Some(Vec::new()), "empty value"),
        (Some("tombstone"), None, "empty value"),
        (Some("truncated"), Some(vec![0, 0, 1]), "truncated registry header"),
        (Some("unknown-id"), Some(pipeline_core::registry::frame(999_999, b"junk")), "999999"),
        (Some("garbage"), Some(pipeline_core::registry::frame(schema_id, &[0xFF; 3])), "undecodable"),
        (None, Some(b"no key, not framed".to_vec()), "not registry-framed"),
        (Some("bad-email"), Some(bad_email), "email is not an address"),
        (Some("blank-name"), Some(blank_name), "first_name is empty"),
        (Some("bad-id"), Some(bad_id), "UUID"),
    ];
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .expect("producer");
    let mut words = Vec::new();
    for (key, value, word) in cases {
        let mut record: FutureRecord<str, [u8]> = FutureRecord::to(&config.kafka.topic);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value.as_deref() {
            record = record.payload(v);
        }
        producer.send(record, Duration::from_secs(10)).await.expect("delivery");
        words.push(word);
    }
    words
}

/// Waits for `n` dead letters and returns their `reason` headers.
pub async fn dead_letter_reasons(config: &Config, n: usize, timeout: Duration) -> Vec<String> {
    pipeline_testkit::eventually(&format!("{n} dead letters"), timeout, || async {
        let records = read_topic(config, &config.kafka.dead_letter_topic).await;
        assert!(records.len() <= n, "{} dead letters, expected {n}", records.len());
        (records.len() == n)
            .then(|| records.iter().map(|r| r.header("reason").unwrap_or("<no reason>").to_string()).collect())
    })
    .await
}

/// Publishes hand-made events (registry-framed Avro, keyed by id) to the test's topic.
pub async fn publish_events(config: &Config, events: &[UserEvent]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let schema_id = pipeline_producer::register_event_schema(config).await.expect("schema");
    let schema = apache_avro::Schema::parse(&pipeline_core::model::event_avro_schema()).expect("schema");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .expect("producer");
    for e in events {
        let value = pipeline_core::registry::frame(
            schema_id,
            &apache_avro::to_avro_datum(&schema, e.to_avro()).expect("encode"),
        );
        let key = e.id.to_string();
        producer
            .send(FutureRecord::to(&config.kafka.topic).key(&key).payload(&value), Duration::from_secs(10))
            .await
            .expect("delivery");
    }
}

/// Events at the edges of the contract: non-Latin names, both postcode forms, every optional
/// field missing, dates near 1900 and far in the future, a leap-day birthday, odd e-mails.
pub fn edge_case_events() -> Vec<UserEvent> {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).expect("date");
    let base = UserEvent {
        id: Uuid::new_v4(),
        gender: Some("male".into()),
        title: Some("Mr".into()),
        first_name: "Олександр".into(),
        last_name: "Коваленко".into(),
        street_number: Some(7),
        street_name: Some("вулиця Шевченка".into()),
        city: Some("Львів".into()),
        state: Some("Львівська".into()),
        country: Some("Ukraine".into()),
        post_code: Some("79000".into()),
        latitude: Some(49.84),
        longitude: Some(24.03),
        timezone_offset: Some("+2:00".into()),
        email: "oleksandr.kovalenko@example.com".into(),
        username: "sasha".into(),
        dob: Some(t("1900-01-01T00:00:00Z")),
        registered_date: Some(t("2999-12-31T23:59:59.999Z")),
        phone: Some("(067) 123-4567".into()),
        cell: Some("(093) 765-4321".into()),
        picture: Some("https://randomuser.me/api/portraits/men/7.jpg".into()),
        nat: Some("UA".into()),
        source: "synthetic".into(),
        fetched_at: t("2026-02-28T10:00:00.123456Z"),
        produced_at: t("2026-02-28T10:00:00.223456Z"),
    };
    let with = |f: &dyn Fn(&mut UserEvent)| {
        let mut e = base.clone();
        e.id = Uuid::new_v4();
        f(&mut e);
        e
    };
    vec![
        base.clone(),
        with(&|e| {
            e.first_name = "محمدرضا".into();
            e.last_name = "کریمی".into();
            e.nat = Some("ir".into());
            e.post_code = Some("12345".into());
        }),
        with(&|e| {
            e.first_name = "张".into();
            e.last_name = "伟".into();
            e.post_code = Some("LS12 7QW".into());
            e.email = "Zhang.Wei@EXAMPLE.CN".into();
        }),
        with(&|e| {
            e.gender = None;
            e.title = None;
            e.street_number = None;
            e.street_name = None;
            e.city = None;
            e.state = None;
            e.country = None;
            e.post_code = None;
            e.latitude = None;
            e.longitude = None;
            e.timezone_offset = None;
            e.dob = None;
            e.registered_date = None;
            e.phone = None;
            e.cell = None;
            e.picture = None;
            e.nat = None;
        }),
        with(&|e| {
            e.dob = Some(t("1904-02-29T12:00:00Z"));
            e.street_name = None;
            e.state = None;
        }),
        with(&|e| {
            e.dob = Some(t("1899-12-31T23:59:59Z"));
            e.street_number = None;
        }),
        with(&|e| e.dob = Some(t("2100-06-15T00:00:00Z"))),
        with(&|e| e.email = "o'brien+tag@sub.Example.ORG".into()),
    ]
}

/// The `pipeline` binary of this workspace (built by `make test` before the tests run).
pub fn pipeline_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test binary> -> target/<profile>/pipeline
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("pipeline");
    assert!(bin.exists(), "{} is missing: build the CLI first (cargo build --bin pipeline)", bin.display());
    bin
}
