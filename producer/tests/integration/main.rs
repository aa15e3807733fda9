//! Producer integration tests: real PostgreSQL, Kafka and schema registry; a local fake HTTP
//! server stands in for the RandomUser API (unreachable from here).

mod fake_api;
mod produce;
mod registry;

use pipeline_core::Config;
use pipeline_testkit::unique;

/// Configuration with a topic and subject of the test's own.
pub fn isolated_config() -> Config {
    let mut c = pipeline_testkit::config();
    c.kafka.topic = unique("it_users");
    c.registry.subject = format!("{}-value", c.kafka.topic);
    c
}

pub use pipeline_testkit::audit_db;

/// Decodes a framed Kafka value with the schema the registry holds for its id.
pub async fn decode(config: &Config, value: &[u8]) -> pipeline_core::model::UserEvent {
    let (id, payload) = pipeline_core::registry::unframe(value).expect("registry-framed value");
    let registry = pipeline_core::registry::RegistryClient::from_config(&config.registry).expect("client");
    let text = registry.schema_by_id(id).await.expect("schema id known to the registry");
    let schema = apache_avro::Schema::parse_str(&text).expect("Avro schema");
    let datum = apache_avro::from_avro_datum(&schema, &mut &payload[..], None).expect("Avro datum");
    pipeline_core::model::UserEvent::from_avro(&datum).expect("a UserEvent")
}
