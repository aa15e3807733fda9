//! Building, starting and stopping the job's two streaming queries.

use chrono::Utc;
use pipeline_core::registry::RegistryClient;
use pipeline_core::Config;
use spark_connect_rs::functions::{col, expr, lit};
use spark_connect_rs::spark::expression::{ExprType, UnresolvedFunction};
use spark_connect_rs::spark::Expression;
use spark_connect_rs::streaming::{OutputMode, StreamingQuery, Trigger};
use spark_connect_rs::{DataFrame, SparkSession};

use super::record::{DesiredState, JobRecord, RecordedQuery};
use super::schemas::{known_schemas, KnownSchemas, SCHEMA_ID_SQL};
use super::status::{query_status, QueryStatus};
use super::{absolute, active_queries, connect, guarded, JobError};
use crate::tables::ensure_table;
use crate::transform::{row_columns, transform_columns, Engine};

fn call(name: &str, arguments: Vec<Expression>) -> Expression {
    Expression {
        expr_type: Some(ExprType::UnresolvedFunction(UnresolvedFunction {
            function_name: name.to_string(),
            arguments,
            is_distinct: false,
            is_user_defined_function: false,
        })),
    }
}

/// `from_avro(data, writer, map(...))`: spark-avro's function, which Spark 3.5 Connect resolves
/// by name. `avroSchema` is the reader schema every version resolves to (one result type for
/// all branches). PERMISSIVE turns a corrupt payload into NULLs instead of failing the query;
/// CORRECTED reads timestamps as the proleptic Gregorian values the producer wrote (Spark's
/// default refuses instants before 1900 as calendar-ambiguous: found by the parity test).
fn from_avro(data: &str, writer: &str, reader: &str) -> Expression {
    let options = call(
        "map",
        vec![
            lit("mode").into(),
            lit("PERMISSIVE").into(),
            lit("datetimeRebaseMode").into(),
            lit("CORRECTED").into(),
            lit("avroSchema").into(),
            lit(reader).into(),
        ],
    );
    call("from_avro", vec![col(data).into(), lit(writer).into(), options])
}

/// `CASE WHEN schema_id = v1 THEN from_avro(.., v1) WHEN ... END`: one branch per version.
fn decode(known: &KnownSchemas, reader: &str) -> spark_connect_rs::column::Column {
    let mut arguments = Vec::new();
    for (_, id, schema) in &known.versions {
        arguments.push(expr(&format!("schema_id = {id}")).into());
        arguments.push(from_avro("payload", schema, reader));
    }
    call("when", arguments).into()
}

/// What `submit` did.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub query: QueryStatus,
    pub dead_letter: QueryStatus,
    /// True when the job was already running and nothing was started.
    pub already_running: bool,
    /// The newest version's id, and every id the job decodes.
    pub schema_id: u32,
    pub schema_ids: Vec<u32>,
}

/// Builds the streaming DataFrames of the job: (valid rows, dead letters).
async fn build(
    spark: &SparkSession,
    config: &Config,
    known: &KnownSchemas,
) -> Result<(DataFrame, DataFrame), JobError> {
    let job = &config.job;
    let mut conf = spark.conf();
    guarded("setting the session time zone", async move { conf.set("spark.sql.session.timeZone", "UTC").await })
        .await?;
    let mut reader = spark
        .read_stream()
        .format("kafka")
        .option("kafka.bootstrap.servers", job.kafka_bootstrap(&config.kafka))
        .option("subscribe", &config.kafka.topic)
        .option("startingOffsets", job.starting_offsets.spark_option())
        .option("maxOffsetsPerTrigger", &job.max_offsets_per_trigger.to_string())
        .option("failOnDataLoss", &job.fail_on_data_loss.to_string());
    for (key, value) in &job.kafka_options {
        reader = reader.option(key, value);
    }
    let raw =
        reader.load(None).map_err(|e| JobError::Spark { what: "the Kafka source".into(), reason: e.to_string() })?;
    let with_id = raw.select_expr([
        "CAST(key AS STRING) AS kafka_key".to_string(),
        "value AS kafka_value".into(),
        "partition AS kafka_partition".into(),
        "offset AS kafka_offset".into(),
        format!("{SCHEMA_ID_SQL} AS schema_id"),
        "substring(value, 6) AS payload".into(),
    ]);
    let framed = with_id.select_expr(["*".to_string(), format!("{} AS frame_error", known.frame_check())]);
    // PERMISSIVE from_avro gives a struct of NULLs for a corrupt payload; `id` and `fetched_at`
    // are required fields, so both NULL means "did not decode".
    let reader_schema = pipeline_core::model::event_avro_schema().to_string();
    let decoded = framed.select([col("*"), decode(known, &reader_schema).alias("event")]);
    let events = decoded.select_expr([
        "event.*".to_string(),
        "kafka_key".into(),
        "kafka_value".into(),
        "kafka_partition".into(),
        "kafka_offset".into(),
        "CASE WHEN frame_error IS NOT NULL THEN frame_error \
         WHEN event IS NULL OR (event.id IS NULL AND event.fetched_at IS NULL) \
              THEN concat('undecodable Avro payload for schema id ', schema_id) END AS decode_error"
            .to_string(),
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

async fn stop_query(query: &StreamingQuery) -> Result<(), JobError> {
    let q = query.clone();
    guarded("stopping a query", async move { q.stop().await }).await
}

/// Starts the job unless it already runs in its session; returns the queries. When only one
/// of the two queries runs (the other failed), that one is stopped and both are started again
/// from their checkpoints: never two copies, never half a job.
pub async fn submit(config: &Config) -> Result<Submitted, JobError> {
    let job = &config.job;
    let spark = connect(config).await?;
    let running = active_queries(&spark).await?;
    let find = |name: &str| running.iter().find(|q| q.name().as_deref() == Some(name)).cloned();
    let registry = RegistryClient::from_config(&config.registry)?;
    let known = known_schemas(&registry, &config.registry.subject).await?;
    let (schema_id, schema_ids) = (known.latest_id(), known.ids());
    let record = JobRecord::load(config)?;
    match (find(&job.query_name), find(&job.dead_letter_query_name)) {
        (Some(main), Some(dead)) => {
            if let Some(mut record) = record.filter(|r| r.desired != DesiredState::Running) {
                record.desired = DesiredState::Running;
                record.changed_at = Utc::now();
                record.save(config)?;
            }
            return Ok(Submitted {
                query: query_status(&main, None).await,
                dead_letter: query_status(&dead, None).await,
                already_running: true,
                schema_id,
                schema_ids: record_ids(config).unwrap_or(schema_ids),
            });
        }
        (Some(one), None) | (None, Some(one)) => {
            tracing::warn!(
                query = one.name().unwrap_or_default(),
                "only one of the job's queries runs: restarting both"
            );
            stop_query(&one).await?;
        }
        (None, None) => {}
    }
    ensure_table(config).await?;
    let (rows, dead) = build(&spark, config, &known).await?;
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
            let _ = stop_query(&main).await;
            return Err(e);
        }
    };
    let recorded =
        |q: &StreamingQuery| RecordedQuery { name: q.name().unwrap_or_default(), id: q.id(), run_id: q.run_id() };
    JobRecord {
        desired: DesiredState::Running,
        changed_at: Utc::now(),
        session_id: job.session_id.to_string(),
        queries: vec![recorded(&main), recorded(&dlq)],
        schema_ids: schema_ids.clone(),
    }
    .save(config)?;
    Ok(Submitted {
        query: query_status(&main, None).await,
        dead_letter: query_status(&dlq, None).await,
        already_running: false,
        schema_id,
        schema_ids,
    })
}

fn record_ids(config: &Config) -> Option<Vec<u32>> {
    JobRecord::load(config).ok().flatten().map(|r| r.schema_ids).filter(|ids| !ids.is_empty())
}

/// Stops the job's queries gracefully and records that the user wants it stopped; returns the
/// names stopped.
pub async fn stop(config: &Config) -> Result<Vec<String>, JobError> {
    let spark = connect(config).await?;
    let names = [config.job.query_name.as_str(), config.job.dead_letter_query_name.as_str()];
    // Recorded first: a supervisor reading the record never restarts what is being stopped.
    JobRecord::mark_stopped(config)?;
    let mut stopped = Vec::new();
    for q in active_queries(&spark).await? {
        let name = q.name().unwrap_or_default();
        if names.contains(&name.as_str()) {
            stop_query(&q).await?;
            stopped.push(name);
        }
    }
    Ok(stopped)
}

/// Blocks until the job's queries have processed everything available (tests, demos).
pub async fn process_all_available(config: &Config) -> Result<(), JobError> {
    let spark = connect(config).await?;
    let names = [config.job.query_name.as_str(), config.job.dead_letter_query_name.as_str()];
    for q in active_queries(&spark).await? {
        if names.contains(&q.name().unwrap_or_default().as_str()) {
            let query = q.clone();
            guarded("waiting for available data", async move { query.process_all_available().await }).await?;
        }
    }
    Ok(())
}
