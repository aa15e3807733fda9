//! The Spark engine: a Structured Streaming job submitted through Spark Connect.
//!
//! Kafka `users_created` -> registry header checked and stripped -> `from_avro` with the
//! subject's latest schema -> the shared transform ([`crate::transform`]) -> Cassandra through
//! the spark-cassandra-connector; refused records -> the dead-letter topic with a `reason`
//! header (a second streaming query). Both queries have their own checkpoint, so a stopped job
//! resumes where it left off.
//!
//! The queries live in a Spark Connect session with a fixed id (`job.session_id`), so that
//! `submit`, `jobs status` and `jobs stop` run from separate invocations see the same queries.
//! spark-connect-rs 0.0.2 can panic (e.g. `last_progress()` before the first batch); every call
//! runs in its own task, so a panic becomes a [`JobError`] instead of reaching the user.

use std::future::Future;
use std::path::{Path, PathBuf};

use pipeline_core::model::{cql_create_keyspace, cql_create_table, CreatedUserRow};
use pipeline_core::registry::{RegistryClient, RegistryError};
use pipeline_core::Config;
use serde_json::Value;
use spark_connect_rs::errors::SparkError;
use spark_connect_rs::functions::{col, lit};
use spark_connect_rs::spark::expression::{ExprType, UnresolvedFunction};
use spark_connect_rs::spark::Expression;
use spark_connect_rs::streaming::{OutputMode, StreamingQuery, Trigger};
use spark_connect_rs::{DataFrame, SparkSession, SparkSessionBuilder};

use crate::transform::{row_columns, transform_columns, Engine};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot reach Spark Connect at {url}: {reason} (is it running? `pipeline cluster up spark-connect`)")]
    Connect { url: String, reason: String },
    #[error("Spark Connect refused the token: {reason} ({token_file}; `pipeline cluster up` writes the token of the running server)")]
    Unauthenticated { reason: String, token_file: String },
    #[error("Spark Connect at {url} refused the call: {reason}")]
    Refused { url: String, reason: String },
    #[error("Spark rejected {what}: {reason}")]
    Spark { what: String, reason: String },
    #[error("the Spark client failed while {what} (internal error of spark-connect-rs: {reason})")]
    ClientPanic { what: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot prepare Cassandra {keyspace}.{table}: {reason}")]
    Cassandra { keyspace: String, table: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Runs one client call in its own task: errors and panics both become [`JobError`].
async fn guarded<T, E, F>(what: &str, fut: F) -> Result<T, JobError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
{
    match tokio::spawn(fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(JobError::Spark { what: what.to_string(), reason: first_lines(&e.to_string()) }),
        Err(join) => {
            let reason = match join.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
                Err(e) => e.to_string(),
            };
            Err(JobError::ClientPanic { what: what.to_string(), reason })
        }
    }
}

/// Panics raised inside spark-connect-rs are caught by [`guarded`] and reported as errors, so
/// their default "thread panicked" print is noise: this hook logs them at debug level and
/// leaves every other panic to the previous hook.
pub fn quiet_client_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("spark-connect-rs")) {
            tracing::debug!("spark-connect-rs panicked (handled): {info}");
        } else {
            previous(info);
        }
    }));
}

/// Spark's errors carry a JVM stack trace; the first lines say what went wrong.
fn first_lines(s: &str) -> String {
    s.lines().take(4).collect::<Vec<_>>().join(" | ")
}

/// The Spark Connect session of the job.
pub async fn connect(config: &Config) -> Result<SparkSession, JobError> {
    let url = pipeline_core::connect::connect_url(config, "pipeline", Some(&config.job.session_id.to_string()))
        .map_err(|e| JobError::Invalid(e.to_string()))?;
    let builder_url = url.secret().to_string();
    let shown = url.to_string();
    let connecting = async move { SparkSessionBuilder::remote(&builder_url).build().await };
    let session = tokio::time::timeout(std::time::Duration::from_secs(30), guarded("connecting", connecting))
        .await
        .map_err(|_| JobError::Connect { url: shown.clone(), reason: "no answer within 30 s".into() })?;
    let session = session.map_err(|e| JobError::Connect { url: shown.clone(), reason: e.to_string() })?;
    // A cheap round trip: building the session does not contact the server. The client's
    // error keeps its type here, so that a refused token is told apart from other failures.
    let probe = session.clone();
    let answer =
        guarded("checking the connection", async move { Ok::<_, std::convert::Infallible>(probe.version().await) })
            .await
            .map_err(|e| JobError::Connect { url: shown.clone(), reason: e.to_string() })?;
    match answer {
        Ok(_) => Ok(session),
        Err(SparkError::Unauthenticated(reason)) => {
            Err(JobError::Unauthenticated { reason: first_lines(&reason), token_file: token_hint(config, &url) })
        }
        Err(SparkError::PermissionDenied(reason)) => {
            Err(JobError::Refused { url: shown, reason: first_lines(&reason) })
        }
        Err(e) => Err(JobError::Connect { url: shown, reason: first_lines(&e.to_string()) }),
    }
}

/// Where the token came from (or should have), for the refusal message.
fn token_hint(config: &Config, url: &pipeline_core::connect::ConnectUrl) -> String {
    let file = config.connect_token_file();
    if url.has_token() {
        format!("sent the token of {}", file.display())
    } else {
        format!("no token sent: {} does not exist", file.display())
    }
}

/// `from_avro(data, schema, map(...))`: spark-avro's function, which Spark 3.5 Connect resolves
/// by name. PERMISSIVE turns a corrupt payload into NULLs instead of failing the query;
/// CORRECTED reads timestamps as the proleptic Gregorian values the producer wrote (Spark's
/// default refuses instants before 1900 as calendar-ambiguous: found by the parity test).
fn from_avro(data: &str, schema: &str) -> spark_connect_rs::column::Column {
    let call = |name: &str, arguments: Vec<Expression>| Expression {
        expr_type: Some(ExprType::UnresolvedFunction(UnresolvedFunction {
            function_name: name.to_string(),
            arguments,
            is_distinct: false,
            is_user_defined_function: false,
        })),
    };
    let options = call(
        "map",
        vec![lit("mode").into(), lit("PERMISSIVE").into(), lit("datetimeRebaseMode").into(), lit("CORRECTED").into()],
    );
    call("from_avro", vec![col(data).into(), lit(schema).into(), options]).into()
}

/// What `submit` did.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub query: QueryInfo,
    pub dead_letter: QueryInfo,
    /// True when the job was already running and nothing was started.
    pub already_running: bool,
    pub schema_id: u32,
}

/// One streaming query and its latest progress.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    pub name: String,
    pub id: String,
    pub run_id: String,
    pub active: bool,
    pub status: Option<Value>,
    pub last_progress: Option<Value>,
}

async fn info(query: &StreamingQuery) -> QueryInfo {
    let q = query.clone();
    let active = guarded("reading query state", async move { q.is_active().await }).await.unwrap_or(false);
    let q = query.clone();
    let status = guarded("reading query status", async move { q.status().await }).await.ok();
    // recent_progress() instead of last_progress(): the latter panics before the first batch.
    let q = query.clone();
    let last_progress = guarded("reading query progress", async move { q.recent_progress().await })
        .await
        .ok()
        .and_then(|v| v.as_array().and_then(|a| a.last().cloned()).or(Some(v).filter(|v| v.is_object())));
    QueryInfo {
        name: query.name().unwrap_or_default(),
        id: query.id(),
        run_id: query.run_id(),
        active,
        status: status.and_then(|s| serde_json::to_value(format!("{s:?}")).ok()),
        last_progress,
    }
}

/// The job's running queries in its session.
pub async fn active_queries(spark: &SparkSession) -> Result<Vec<StreamingQuery>, JobError> {
    let manager = spark.streams();
    guarded("listing streaming queries", async move { manager.active().await }).await
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Creates the keyspace and table if absent (CQL derived from the record model).
pub async fn ensure_table(config: &Config) -> Result<(), JobError> {
    let c = &config.cassandra;
    let session = pipeline_core::clients::cassandra::session(c).await.map_err(|e| JobError::Cassandra {
        keyspace: c.keyspace.clone(),
        table: c.table.clone(),
        reason: e.to_string(),
    })?;
    ensure_table_in(&session, c).await
}

/// [`ensure_table`] on an open session (the local engine reuses its writer's).
pub async fn ensure_table_in(
    session: &scylla::client::session::Session,
    c: &pipeline_core::config::CassandraConfig,
) -> Result<(), JobError> {
    let err = |reason: String| JobError::Cassandra { keyspace: c.keyspace.clone(), table: c.table.clone(), reason };
    for cql in [
        cql_create_keyspace(&c.keyspace, c.replication_factor),
        cql_create_table(&c.keyspace, &c.table, CreatedUserRow::FIELDS),
    ] {
        session.query_unpaged(cql, &[]).await.map_err(|e| err(e.to_string()))?;
    }
    session.await_schema_agreement().await.map_err(|e| err(format!("schema agreement: {e}")))?;
    Ok(())
}

/// Checks on the registry header, in Spark SQL over the binary `kafka_value`.
fn frame_check(schema_id: u32) -> String {
    format!(
        "CASE WHEN kafka_value IS NULL OR length(kafka_value) = 0 THEN 'empty value' \
         WHEN hex(substring(kafka_value, 1, 1)) <> '00' THEN concat('not registry-framed: first byte is 0x', \
              lower(hex(substring(kafka_value, 1, 1))), ', expected the magic byte 0x00') \
         WHEN length(kafka_value) < 5 THEN concat('truncated registry header: ', length(kafka_value), ' byte(s), need at least 5') \
         WHEN conv(hex(substring(kafka_value, 2, 4)), 16, 10) <> '{schema_id}' THEN concat('schema id ', \
              conv(hex(substring(kafka_value, 2, 4)), 16, 10), ' is not the schema id {schema_id} the job was submitted with') \
         END"
    )
}

/// Builds the streaming DataFrames of the job: (valid rows, dead letters).
async fn build(
    spark: &SparkSession,
    config: &Config,
    schema_id: u32,
    schema: &str,
) -> Result<(DataFrame, DataFrame), JobError> {
    let job = &config.job;
    let mut conf = spark.conf();
    guarded("setting the session time zone", async move { conf.set("spark.sql.session.timeZone", "UTC").await })
        .await?;
    let raw = spark
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", job.kafka_bootstrap(&config.kafka))
        .option("subscribe", &config.kafka.topic)
        .option("startingOffsets", job.starting_offsets.spark_option())
        .option("maxOffsetsPerTrigger", &job.max_offsets_per_trigger.to_string())
        .option("failOnDataLoss", &job.fail_on_data_loss.to_string())
        .load(None)
        .map_err(|e| JobError::Spark { what: "the Kafka source".into(), reason: e.to_string() })?;
    let framed = raw.select_expr([
        "CAST(key AS STRING) AS kafka_key".to_string(),
        "value AS kafka_value".into(),
        "partition AS kafka_partition".into(),
        "offset AS kafka_offset".into(),
        format!("{} AS frame_error", frame_check(schema_id)),
        "substring(value, 6) AS payload".into(),
    ]);
    // PERMISSIVE from_avro gives a struct of NULLs for a corrupt payload; `id` and `fetched_at`
    // are required fields, so both NULL means "did not decode".
    let decoded = framed.select([col("*"), from_avro("payload", schema).alias("event")]);
    let events = decoded.select_expr([
        "event.*".to_string(),
        "kafka_key".into(),
        "kafka_value".into(),
        "kafka_partition".into(),
        "kafka_offset".into(),
        format!(
            "CASE WHEN frame_error IS NOT NULL THEN frame_error \
             WHEN event IS NULL OR (event.id IS NULL AND event.fetched_at IS NULL) \
                  THEN 'undecodable Avro payload for schema id {schema_id}' END AS decode_error"
        ),
    ]);
    let transformed = events.select_expr(transform_columns(Engine::Spark));
    let rows = transformed.clone().filter("reject_reason IS NULL").select_expr(row_columns());
    let dead = transformed.filter("reject_reason IS NOT NULL").select_expr([
        "CAST(kafka_key AS BINARY) AS key",
        "kafka_value AS value",
        "array(named_struct('key', 'reason', 'value', CAST(reject_reason AS BINARY)), \
               named_struct('key', 'engine', 'value', CAST('spark' AS BINARY)), \
               named_struct('key', 'source_offset', 'value', \
                            CAST(concat(kafka_partition, ':', kafka_offset) AS BINARY))) AS headers",
    ]);
    Ok((rows, dead))
}

/// Starts a streaming query. The Cassandra connector refreshes its cached schema a moment
/// after a keyspace or table is created, so "Couldn't find" is retried for a few seconds.
async fn start(writer: spark_connect_rs::streaming::DataStreamWriter, what: &str) -> Result<StreamingQuery, JobError> {
    let mut attempt = 0;
    loop {
        let w = writer.clone();
        match guarded(what, async move { w.start(None).await }).await {
            Err(JobError::Spark { reason, .. }) if reason.contains("Couldn't find") && attempt < 15 => {
                attempt += 1;
                tracing::debug!(attempt, "Cassandra schema not visible to Spark yet: {reason}");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Starts the job unless it already runs in its session; returns the queries.
pub async fn submit(config: &Config) -> Result<Submitted, JobError> {
    let job = &config.job;
    let spark = connect(config).await?;
    let running = active_queries(&spark).await?;
    let find = |name: &str| running.iter().find(|q| q.name().as_deref() == Some(name)).cloned();
    let registry = RegistryClient::from_config(&config.registry)?;
    let (schema_id, schema) = registry.latest(&config.registry.subject).await?;
    if let (Some(main), Some(dead)) = (find(&job.query_name), find(&job.dead_letter_query_name)) {
        return Ok(Submitted {
            query: info(&main).await,
            dead_letter: info(&dead).await,
            already_running: true,
            schema_id,
        });
    }
    if find(&job.query_name).is_some() || find(&job.dead_letter_query_name).is_some() {
        return Err(JobError::Invalid(
            "only one of the job's two queries is running; run `pipeline jobs stop`, then submit again".into(),
        ));
    }
    ensure_table(config).await?;
    let (rows, dead) = build(&spark, config, schema_id, &schema).await?;
    let checkpoints = absolute(&job.checkpoint_dir);
    let trigger = Trigger::ProcessingTimeInterval(job.trigger_interval.spark());
    let main = rows
        .write_stream()
        .format("org.apache.spark.sql.cassandra")
        .option("keyspace", &config.cassandra.keyspace)
        .option("table", &config.cassandra.table)
        .option("checkpointLocation", &checkpoints.join(&job.query_name).to_string_lossy())
        .output_mode(OutputMode::Append)
        .query_name(&job.query_name)
        .trigger(trigger.clone());
    let main = start(main, "starting the Cassandra query").await?;
    let dlq = dead
        .write_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", job.kafka_bootstrap(&config.kafka))
        .option("topic", &config.kafka.dead_letter_topic)
        .option("checkpointLocation", &checkpoints.join(&job.dead_letter_query_name).to_string_lossy())
        .output_mode(OutputMode::Append)
        .query_name(&job.dead_letter_query_name)
        .trigger(trigger);
    let dlq = match start(dlq, "starting the dead-letter query").await {
        Ok(q) => q,
        Err(e) => {
            // Never leave half a job behind.
            let m = main.clone();
            let _ = guarded("stopping the Cassandra query", async move { m.stop().await }).await;
            return Err(e);
        }
    };
    Ok(Submitted { query: info(&main).await, dead_letter: info(&dlq).await, already_running: false, schema_id })
}

/// The job's queries with their state and latest progress.
pub async fn status(config: &Config) -> Result<Vec<QueryInfo>, JobError> {
    let spark = connect(config).await?;
    let mut out = Vec::new();
    for q in active_queries(&spark).await? {
        out.push(info(&q).await);
    }
    Ok(out)
}

/// Stops the job's queries gracefully; returns the names stopped.
pub async fn stop(config: &Config) -> Result<Vec<String>, JobError> {
    let spark = connect(config).await?;
    let names = [config.job.query_name.as_str(), config.job.dead_letter_query_name.as_str()];
    let mut stopped = Vec::new();
    for q in active_queries(&spark).await? {
        let name = q.name().unwrap_or_default();
        if names.contains(&name.as_str()) {
            let query = q.clone();
            guarded("stopping a query", async move { query.stop().await }).await?;
            stopped.push(name);
        }
    }
    Ok(stopped)
}

/// Blocks until the query has processed everything available (tests, demos).
pub async fn process_all_available(config: &Config) -> Result<(), JobError> {
    let spark = connect(config).await?;
    for q in active_queries(&spark).await? {
        let query = q.clone();
        guarded("waiting for available data", async move { query.process_all_available().await }).await?;
    }
    Ok(())
}

/// One line of `submit --follow`: rates, batch duration, offsets.
pub fn progress_line(p: &Value) -> String {
    let num = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let batch = p.get("batchId").and_then(Value::as_i64).unwrap_or(-1);
    let duration = p.pointer("/durationMs/triggerExecution").and_then(Value::as_i64).unwrap_or(0);
    let rows = p.get("numInputRows").and_then(Value::as_i64).or_else(|| {
        p.get("sources")
            .and_then(Value::as_array)
            .map(|s| s.iter().filter_map(|s| s.get("numInputRows")?.as_i64()).sum())
    });
    let end = p.pointer("/sources/0/endOffset").map(|v| v.to_string()).unwrap_or_default();
    format!(
        "batch {batch}: {} rows, {:.0} in/s, {:.0} processed/s, {duration} ms, offsets {end}",
        rows.unwrap_or(0),
        num("inputRowsPerSecond"),
        num("processedRowsPerSecond")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_reads_spark_progress_json() {
        let p = serde_json::json!({
            "batchId": 3, "numInputRows": 120, "inputRowsPerSecond": 60.0, "processedRowsPerSecond": 240.5,
            "durationMs": {"triggerExecution": 498},
            "sources": [{"endOffset": {"users_created": {"0": 40, "1": 41, "2": 39}}}]
        });
        let line = progress_line(&p);
        assert!(line.starts_with("batch 3: 120 rows, 60 in/s, 240 processed/s, 498 ms"), "{line}");
        assert!(line.contains("\"users_created\""));
    }

    #[test]
    fn frame_check_names_the_schema_id() {
        assert!(frame_check(42).contains("<> '42'"));
    }
}
