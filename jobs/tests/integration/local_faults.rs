//! The local engine under faults, as separate `pipeline local` processes against the real
//! services: a member of a two-engine group SIGKILLed under a ~1,000 records/s stream (the
//! survivor takes its partitions, nothing is lost, no offset is ever committed past a record
//! not yet written), and a table whose schema changes under a running engine (a permanent
//! write error: exit 3 naming the table and the column, nothing lost after the fix).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::config::SourceKind;
use pipeline_core::model::UserEvent;
use pipeline_core::shutdown::CancellationToken;
use pipeline_core::Config;
use pipeline_producer::ProduceOptions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::oracle::{create_topics, isolated, pipeline_binary};

const WAIT: Duration = Duration::from_secs(120);

/// Prints how long the test has run at each phase (CI time is budgeted).
fn phase(t0: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
}

/// `pipeline local --until-idle` as a child process with the test's names, a short session
/// timeout (a killed member leaves the group within seconds) and small batches.
fn engine(cfg: &Config, settings: &std::path::Path) -> Command {
    let mut cmd = Command::new(pipeline_binary());
    cmd.args(["local", "--until-idle"])
        .envs(pipeline_testkit::pipeline_env(cfg))
        .env("PIPELINE_CONFIG", settings)
        .env("PIPELINE__LOCAL__BATCH_SIZE", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// A config file of the test's own: the consumer group notices a dead member after 6 s (the
/// broker's minimum) instead of 45.
fn settings_file(cfg: &Config) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.toml", cfg.kafka.topic));
    std::fs::write(
        &path,
        "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n",
    )
    .expect("write the settings file");
    path
}

/// Produces up to `count` users at `rate` per second through the real producer, in the
/// background, until `stop`; returns how many were published.
fn stream(cfg: &Config, count: u64, rate: f64, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    let cfg = cfg.clone();
    tokio::spawn(async move {
        let opts = ProduceOptions {
            source: SourceKind::Synthetic,
            count: Some(count),
            rate: Some(rate),
            batch: 100,
            interval: None,
            seed: rand::random::<u64>() | 1,
        };
        let stopped = stop.clone();
        let summary = pipeline_producer::run(&cfg, opts, stop, None).await.expect("producer run");
        assert!(stopped.is_cancelled() || summary.published == count, "{summary:?}");
        summary.published
    })
}

/// Every id in the test's table.
async fn ids(cfg: &Config) -> HashSet<Uuid> {
    let db = pipeline_testkit::cassandra(cfg).await;
    let q = format!("SELECT id FROM {}.{}", cfg.cassandra.keyspace, cfg.cassandra.table);
    let mut rows = db.query_iter(q, &[]).await.expect("select ids").rows_stream::<(Uuid,)>().expect("row type");
    let mut out = HashSet::new();
    while let Some(row) = rows.next().await {
        out.insert(row.expect("row").0);
    }
    out
}

/// Every record of the topic: (partition, offset) -> user id.
async fn ids_by_position(cfg: &Config) -> HashMap<(i32, i64), Uuid> {
    let registry = pipeline_core::registry::RegistryClient::from_config(&cfg.registry).expect("registry");
    let mut out = HashMap::new();
    let mut schemas = HashMap::new();
    for r in pipeline_testkit::read_topic(cfg, &cfg.kafka.topic).await {
        let value = r.value.expect("a value");
        let (id, payload) = pipeline_core::registry::unframe(&value).expect("framed");
        if let std::collections::hash_map::Entry::Vacant(e) = schemas.entry(id) {
            let text = registry.schema_by_id(id).await.expect("schema");
            e.insert(apache_avro::Schema::parse_str(&text).expect("parse"));
        }
        let datum = apache_avro::from_avro_datum(&schemas[&id], &mut &payload[..], None).expect("datum");
        out.insert((r.partition, r.offset), UserEvent::from_avro(&datum).expect("event").id);
    }
    out
}

/// The group's committed offsets, read by a third consumer that never joins the group.
async fn committed(cfg: &Config) -> HashMap<i32, i64> {
    let (kafka, group, topic) = (cfg.kafka.clone(), cfg.local.group_id.clone(), cfg.kafka.topic.clone());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = pipeline_core::clients::kafka::client_config(&kafka, "it-committed")
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition(&topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("join")
}

/// Members of the engine's group once it is stable.
async fn stable_members(cfg: &Config) -> Option<usize> {
    let (kafka, group) = (cfg.kafka.clone(), cfg.local.group_id.clone());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer =
            pipeline_core::clients::kafka::client_config(&kafka, "it-groups").create().expect("consumer");
        let list = c.fetch_group_list(Some(&group), Duration::from_secs(10)).ok()?;
        let g = list.groups().first()?;
        (g.state() == "Stable").then_some(g.members().len())
    })
    .await
    .expect("join")
}

/// Waits for a child to exit (stderr read meanwhile, so it never blocks on a full pipe).
async fn finish(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_under_load_loses_nothing_and_commits_nothing_unwritten() {
    let t0 = Instant::now();
    let cfg = isolated("it_local_rebalance");
    create_topics(&cfg).await;
    pipeline_jobs::tables::ensure_table(&cfg).await.expect("table");
    let settings = settings_file(&cfg);
    // ~1,000 records/s until the survivor has taken the partitions over, and 2 s more.
    let stop_stream = CancellationToken::new();
    let producer = stream(&cfg, 100_000, 1000.0, stop_stream.clone());

    // A's stderr is not read: it must never block on a full pipe.
    phase(t0, "set up; engines starting");
    let mut doomed = engine(&cfg, &settings).stderr(Stdio::null()).spawn().expect("start engine A");
    let survivor = engine(&cfg, &settings).spawn().expect("start engine B");
    pipeline_testkit::eventually("both engines in the group", WAIT, || async {
        (stable_members(&cfg).await == Some(2)).then_some(())
    })
    .await;
    phase(t0, "two members");
    // Let both write for a moment, then kill one without warning.
    pipeline_testkit::eventually("rows written", WAIT, || async { (ids(&cfg).await.len() >= 1000).then_some(()) })
        .await;
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");
    let killed_at = Instant::now();
    phase(t0, "killed A");

    // While the survivor works: snapshots of (committed offsets, then the rows written).
    let mut snapshots = Vec::new();
    let mut survivor = Some(tokio::task::spawn_blocking(move || survivor.wait_with_output()));
    let mut taken_over = None;
    let output = loop {
        let offsets = committed(&cfg).await;
        snapshots.push((offsets, ids(&cfg).await));
        if taken_over.is_none() && stable_members(&cfg).await == Some(1) {
            taken_over = Some(killed_at.elapsed());
        }
        if taken_over.is_some_and(|t| killed_at.elapsed() > t + Duration::from_secs(2)) {
            stop_stream.cancel();
        }
        let handle = survivor.as_mut().expect("survivor");
        if handle.is_finished() {
            break survivor.take().expect("survivor").await.expect("join").expect("wait");
        }
        assert!(killed_at.elapsed() < WAIT, "the survivor did not finish within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    phase(t0, "survivor done");
    let total = producer.await.expect("producer");
    assert!(
        output.status.success(),
        "the survivor failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("the group was stable with the survivor alone {taken_over:?} after the kill");

    let by_position = ids_by_position(&cfg).await;
    let produced: HashSet<Uuid> = by_position.values().copied().collect();
    assert_eq!(produced.len(), total as usize);
    assert_eq!(ids(&cfg).await, produced, "Cassandra ids == produced ids");
    // No snapshot's committed offset runs ahead of a row not yet written at that moment.
    for (i, (offsets, written)) in snapshots.iter().enumerate() {
        for ((partition, offset), id) in &by_position {
            if offsets.get(partition).is_some_and(|c| offset < c) {
                assert!(
                    written.contains(id),
                    "snapshot {i}: partition {partition} committed up to {:?} but offset {offset} ({id}) was not written",
                    offsets.get(partition)
                );
            }
        }
    }
    let last = committed(&cfg).await;
    let ends: HashMap<i32, i64> = by_position.keys().fold(HashMap::new(), |mut m, (p, o)| {
        let e = m.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
        m
    });
    assert_eq!(last, ends, "every partition committed to its end");
    phase(t0, &format!("{} snapshots checked", snapshots.len()));
    let _ = std::fs::remove_file(settings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_mid_run_stops_the_engine_and_nothing_is_lost_after_the_fix() {
    let t0 = Instant::now();
    let cfg = isolated("it_local_schema");
    create_topics(&cfg).await;
    pipeline_jobs::tables::ensure_table(&cfg).await.expect("table");
    let settings = settings_file(&cfg);
    let total = 2_000;
    let producer = stream(&cfg, total, 500.0, CancellationToken::new());
    let table = format!("{}.{}", cfg.cassandra.keyspace, cfg.cassandra.table);
    let db = pipeline_testkit::cassandra(&cfg).await;

    phase(t0, "set up; engine starting");
    let child = engine(&cfg, &settings).spawn().expect("start the engine");
    pipeline_testkit::eventually("rows written", WAIT, || async { (!ids(&cfg).await.is_empty()).then_some(()) }).await;
    // Cassandra 5 refuses to change a column's type ("Altering column types is no longer
    // supported") and to re-add a dropped column with another type: dropping the column is
    // the schema change a running engine can meet. Its prepared insert then names a column
    // the table lacks.
    phase(t0, "rows written");
    db.query_unpaged(format!("ALTER TABLE {table} DROP email_domain"), &[]).await.expect("drop the column");
    let altered = Instant::now();
    let output = tokio::time::timeout(WAIT, finish(child)).await.expect("the engine exits");
    let took = altered.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("the engine exited {took:?} after the change: {}", stderr.lines().last().unwrap_or_default());
    assert_eq!(output.status.code(), Some(3), "exit code of a permanent write error; stderr:\n{stderr}");
    assert!(took < Duration::from_secs(30), "the engine took {took:?} to stop");
    assert!(
        stderr.contains(&table) && stderr.contains("email_domain") && stderr.contains("permanent"),
        "the message names the table and the column: {stderr}"
    );

    db.query_unpaged(format!("ALTER TABLE {table} ADD email_domain text"), &[]).await.expect("restore the column");
    producer.await.expect("producer");
    phase(t0, "restored; restarting");
    let output = finish(engine(&cfg, &settings).spawn().expect("restart the engine")).await;
    assert!(output.status.success(), "restarted engine failed: {}", String::from_utf8_lossy(&output.stderr));
    phase(t0, "restarted engine done");
    let produced: HashSet<Uuid> = ids_by_position(&cfg).await.into_values().collect();
    assert_eq!(produced.len(), total as usize);
    assert_eq!(ids(&cfg).await, produced, "Cassandra ids == produced ids");
    let _ = std::fs::remove_file(settings);
}
