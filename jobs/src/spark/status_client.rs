//! [`StatusClient`]: the job's status read again and again through the same clients.

use std::collections::BTreeMap;
use std::time::Duration;

use pipeline_core::Config;
use spark_connect_rs::streaming::StreamingQuery;
use spark_connect_rs::SparkSession;

use super::status::JobStatus;
use super::{active_queries, connect};

type OffsetsClient = std::sync::Arc<rdkafka::consumer::BaseConsumer>;

/// The topic's end offsets (high watermarks), from Kafka, through `client` (created if absent).
pub(super) async fn end_offsets(
    config: &Config,
    client: &mut Option<OffsetsClient>,
) -> Result<BTreeMap<i32, i64>, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer = match client.as_ref() {
        Some(c) => c.clone(),
        None => {
            let c: BaseConsumer = pipeline_core::clients::kafka::client_config(&config.kafka, "job-status")
                .create()
                .map_err(|e| e.to_string())?;
            let c = std::sync::Arc::new(c);
            *client = Some(c.clone());
            c
        }
    };
    let topic = config.kafka.topic.clone();
    let read = move || -> Result<BTreeMap<i32, i64>, String> {
        let timeout = Duration::from_secs(5);
        let md = consumer.fetch_metadata(Some(&topic), timeout).map_err(|e| e.to_string())?;
        let mut out = BTreeMap::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, p.id(), timeout).map_err(|e| e.to_string())?;
            out.insert(p.id(), high);
        }
        Ok(out)
    };
    let result = tokio::task::spawn_blocking(read).await.map_err(|e| e.to_string()).and_then(|r| r);
    if result.is_err() {
        *client = None;
    }
    result
}

/// Reads the job's status again and again with the same Spark Connect session and Kafka
/// client (the dashboard and the supervisor poll every few seconds: one session for their
/// lifetime instead of one per look). Either client is re-created after an error.
#[derive(Default)]
pub struct StatusClient {
    spark: Option<SparkSession>,
    pub(super) kafka: Option<OffsetsClient>,
}

impl StatusClient {
    pub fn new() -> StatusClient {
        StatusClient::default()
    }

    /// The active queries through the kept session; on an error, once more through a new one
    /// (the Connect server may have restarted since).
    pub(super) async fn active(
        &mut self,
        config: &Config,
    ) -> Result<(SparkSession, Vec<StreamingQuery>), super::JobError> {
        if let Some(spark) = self.spark.clone() {
            match active_queries(&spark).await {
                Ok(a) => return Ok((spark, a)),
                Err(e) => {
                    tracing::debug!("the kept Spark Connect session failed ({e}): connecting again");
                    self.spark = None;
                }
            }
        }
        let spark = connect(config).await?;
        let active = active_queries(&spark).await?;
        self.spark = Some(spark.clone());
        Ok((spark, active))
    }

    /// The job's status (as [`super::status()`]).
    pub async fn status(&mut self, config: &Config) -> JobStatus {
        super::status::status_with(self, config).await
    }
}
