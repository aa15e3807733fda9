//! Kafka clients: every producer, consumer and admin client of the project starts from
//! [`client_config`].

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Why a topic could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot create a Kafka admin client for {bootstrap}: {source}")]
    Client { bootstrap: String, source: rdkafka::error::KafkaError },
    #[error("cannot create topics on {bootstrap}: {source} (is Kafka up? `pipeline cluster up kafka`)")]
    Request { bootstrap: String, source: rdkafka::error::KafkaError },
    #[error("cannot create topic {topic}: {code}")]
    Refused { topic: String, code: RDKafkaErrorCode },
}

/// The base configuration of every Kafka client: bootstrap servers, a client id naming the
/// component (`<kafka.client_id>-<component>`, visible in the broker's logs and metrics),
/// connection timeouts, librdkafka's own logging kept to warnings, then `kafka.properties`
/// from the config (where `security.protocol`, `sasl.*` and `ssl.*` go), which win.
pub fn client_config(kafka: &KafkaConfig, component: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", format!("{}-{component}", kafka.client_id))
        .set("socket.connection.setup.timeout.ms", kafka.connect_timeout_ms.to_string())
        .set("log_level", "4");
    for (key, value) in &kafka.properties {
        c.set(key, value);
    }
    c
}

/// Creates topics with `partitions` partitions, treating "already exists" as success.
pub async fn create_topics(kafka: &KafkaConfig, topics: &[&str], partitions: i32) -> Result<(), TopicError> {
    let bootstrap = kafka.bootstrap_servers.clone();
    let admin: AdminClient<DefaultClientContext> = client_config(kafka, "admin")
        .create()
        .map_err(|source| TopicError::Client { bootstrap: bootstrap.clone(), source })?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))))
        .await
        .map_err(|source| TopicError::Request { bootstrap, source })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_properties_win_and_the_client_id_names_the_component() {
        let mut k = crate::Config::defaults().kafka;
        k.properties.insert("security.protocol".into(), "SASL_SSL".into());
        k.properties.insert("log_level".into(), "6".into());
        let c = client_config(&k, "verify");
        assert_eq!(c.get("bootstrap.servers"), Some(k.bootstrap_servers.as_str()));
        assert_eq!(c.get("client.id"), Some("pipeline-verify"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("log_level"), Some("6"));
    }
}
