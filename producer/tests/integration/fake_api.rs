//! The RandomUser code path end to end, against a local fake API: realistic v1.4 responses
//! (numeric and string postcodes, credentials), a garbage response, then real services.

use pipeline_core::config::SourceKind;
use pipeline_core::shutdown::CancellationToken;
use pipeline_producer::{run, ProduceOptions};
use pipeline_testkit::{create_topic, read_topic, unique};
use serde_json::Value;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{audit_db, decode, isolated_config};

/// The fixture response with fresh ids, so repeated runs never collide in the audit table.
fn fixture_with_fresh_ids() -> (Value, Vec<Uuid>) {
    let mut body: Value =
        serde_json::from_str(include_str!("../fixtures/randomuser_v1_4.json")).expect("fixture is JSON");
    let mut ids = Vec::new();
    for user in body["results"].as_array_mut().expect("results") {
        let id = Uuid::new_v4();
        user["login"]["uuid"] = Value::String(id.to_string());
        ids.push(id);
    }
    (body, ids)
}

#[tokio::test]
async fn api_users_are_normalised_and_garbage_is_rejected_with_a_reason() {
    let server = MockServer::start().await;
    let marker = unique("garbage");
    Mock::given(method("GET"))
        .and(path("/api/1.4/"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("<html>{marker} not json")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    let (body, ids) = fixture_with_fresh_ids();
    Mock::given(method("GET"))
        .and(path("/api/1.4/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&body))
        .with_priority(2)
        .mount(&server)
        .await;

    let mut cfg = isolated_config();
    cfg.producer.randomuser.base_url = server.uri();
    create_topic(&cfg, &cfg.kafka.topic, 1).await;
    let opts = ProduceOptions {
        source: SourceKind::RandomUser,
        count: Some(3),
        rate: None,
        batch: 2,
        interval: None,
        seed: 1,
    };
    let summary = run(&cfg, opts, CancellationToken::new(), None).await.expect("producer run");
    assert_eq!((summary.rejected, summary.published), (1, 2), "{summary:?}");

    // The garbage response is audited as rejected, with a reason.
    let db = audit_db(&cfg).await;
    let reasons: Vec<String> = db
        .query(
            "SELECT reason FROM audit.rejected WHERE source = 'randomuser' AND payload LIKE $1",
            &[&format!("%{marker}%")],
        )
        .await
        .expect("rejected rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].to_lowercase().contains("json"), "reason: {}", reasons[0]);

    // Both users reach Kafka; the numeric postcode became text, the string one is kept.
    let records = read_topic(&cfg, &cfg.kafka.topic).await;
    assert_eq!(records.len(), 2);
    let mut postcodes = Vec::new();
    for r in &records {
        let event = decode(&cfg, r.value.as_deref().expect("value")).await;
        assert!(ids.contains(&event.id));
        assert_eq!(event.source, "randomuser");
        postcodes.push((event.nat.clone().unwrap_or_default(), event.post_code.clone().unwrap_or_default()));
    }
    postcodes.sort();
    let expected: Vec<(String, String)> = body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|u| {
            let pc = &u["location"]["postcode"];
            (
                u["nat"].as_str().unwrap_or_default().to_string(),
                pc.as_str().map(String::from).unwrap_or_else(|| pc.to_string()),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(postcodes, expected);
    assert!(body["results"].as_array().expect("results").iter().any(|u| u["location"]["postcode"].is_number()));
}
