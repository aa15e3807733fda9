//! Schema governance: BACKWARD compatibility is enforced by the registry.

use pipeline_core::model::event_avro_schema;
use pipeline_core::registry::{RegistryClient, RegistryError};
use pipeline_testkit::unique;
use serde_json::json;

#[tokio::test]
async fn an_incompatible_schema_is_refused_with_the_subject_and_reason() {
    let cfg = pipeline_testkit::config();
    let subject = format!("{}-value", unique("it_compat"));
    let registry = RegistryClient::from_config(&cfg.registry).expect("client");
    let first = registry.register(&subject, &event_avro_schema()).await.expect("first version");
    registry.set_compatibility(&subject, "BACKWARD").await.expect("BACKWARD");
    assert_eq!(registry.compatibility(&subject).await.expect("read level").as_deref(), Some("BACKWARD"));

    // A new required field without a default cannot read old data: refused.
    let mut breaking = event_avro_schema();
    breaking["fields"].as_array_mut().expect("fields").push(json!({"name": "loyalty_tier", "type": "string"}));
    let err = registry.register(&subject, &breaking).await.expect_err("incompatible schema must be refused");
    assert!(matches!(&err, RegistryError::Incompatible { subject: s, .. } if *s == subject), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&subject) && message.contains("BACKWARD"), "{message}");

    // An optional field with a default is a compatible evolution: accepted as a new version.
    let mut evolved = event_avro_schema();
    evolved["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "loyalty_tier", "type": ["null", "string"], "default": null}));
    let second = registry.register(&subject, &evolved).await.expect("compatible evolution");
    assert_ne!(first, second);
    let (latest, _) = registry.latest(&subject).await.expect("latest");
    assert_eq!(latest, second);
}
