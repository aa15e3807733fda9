//! The parse/validate/enrich step, defined once as SQL that Spark SQL and DataFusion both run.
//!
//! Input: a view named [`INPUT_VIEW`] whose columns are the [`UserEvent`] fields plus the
//! engine's Kafka columns ([`KAFKA_COLUMNS`]) and `decode_error` (why the value could not be
//! decoded, or NULL). Output: the [`CreatedUserRow`] columns in order, then `reject_reason`
//! (NULL for a valid row) and the Kafka columns passed through for the dead-letter path.
//!
//! Only functions with the same meaning in both dialects are used: `concat_ws` (skips NULLs),
//! `nullif`, `split_part`, `lower`, `upper`, `trim`, `regexp_like`, `EXTRACT`, `CAST`, `now()`.
//! Timestamps are UTC in both engines (Spark's session time zone is set to UTC).
//!
//! [`UserEvent`]: pipeline_core::model::UserEvent

use pipeline_core::model::CreatedUserRow;

/// Name of the input view both engines register.
pub const INPUT_VIEW: &str = "users_created_events";

/// Kafka columns every engine supplies next to the event fields.
pub const KAFKA_COLUMNS: &[&str] = &["kafka_key", "kafka_value", "kafka_partition", "kafka_offset"];

/// Which engine wrote a row (the `engine` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Spark,
    DataFusion,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Spark => "spark",
            Engine::DataFusion => "datafusion",
        }
    }
}

/// Reasons a decoded event is refused (first failing rule wins).
const VALIDATION: &str = "CASE \
    WHEN decode_error IS NOT NULL THEN decode_error \
    WHEN id IS NULL OR NOT regexp_like(id, '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$') \
        THEN 'id is not a UUID' \
    WHEN first_name IS NULL OR trim(first_name) = '' THEN 'first_name is empty' \
    WHEN last_name IS NULL OR trim(last_name) = '' THEN 'last_name is empty' \
    WHEN username IS NULL OR trim(username) = '' THEN 'username is empty' \
    WHEN email IS NULL OR NOT regexp_like(email, '^[^@ ]+@[^@ ]+$') THEN 'email is not an address' \
    WHEN fetched_at IS NULL OR produced_at IS NULL THEN 'fetched_at or produced_at is missing' \
    END";

/// Age in whole years at the time the user was fetched (deterministic, unlike "now").
const AGE: &str = "CASE WHEN dob IS NULL THEN NULL ELSE CAST(\
    EXTRACT(YEAR FROM fetched_at) - EXTRACT(YEAR FROM dob) \
    - CASE WHEN EXTRACT(MONTH FROM fetched_at) * 100 + EXTRACT(DAY FROM fetched_at) \
             < EXTRACT(MONTH FROM dob) * 100 + EXTRACT(DAY FROM dob) THEN 1 ELSE 0 END \
    AS INT) END";

/// "number street, city, state, country", skipping missing parts.
const ADDRESS: &str = "nullif(concat_ws(', ', \
    nullif(trim(concat_ws(' ', CAST(street_number AS STRING), street_name)), ''), \
    city, state, country), '')";

/// The expression of every output column, in [`CreatedUserRow::FIELDS`] order.
fn column_expr(name: &str, engine: Engine) -> String {
    match name {
        "address" => ADDRESS.to_string(),
        "timestamp" => "fetched_at".to_string(),
        "age" => AGE.to_string(),
        "email_domain" => "nullif(lower(split_part(email, '@', 2)), '')".to_string(),
        "nationality" => "upper(nat)".to_string(),
        "processed_at" => "now()".to_string(),
        "engine" => format!("'{}'", engine.name()),
        other => other.to_string(),
    }
}

/// The transform as a select list (`expr AS name`): Spark applies it with `selectExpr` on the
/// streaming DataFrame (Spark 3.5 Connect refuses `spark.sql` over a streaming view), DataFusion
/// through [`transform_sql`]. The engine name is the only difference.
pub fn transform_columns(engine: Engine) -> Vec<String> {
    let mut columns: Vec<String> =
        CreatedUserRow::FIELDS.iter().map(|f| format!("{} AS {}", column_expr(f.name, engine), f.name)).collect();
    columns.push(format!("{VALIDATION} AS reject_reason"));
    columns.extend(KAFKA_COLUMNS.iter().map(|c| c.to_string()));
    columns
}

/// The transform as one SQL query over [`INPUT_VIEW`].
pub fn transform_sql(engine: Engine) -> String {
    format!("SELECT {} FROM {INPUT_VIEW}", transform_columns(engine).join(",\n       "))
}

/// The row columns, in table order (what is written to Cassandra).
pub fn row_columns() -> Vec<&'static str> {
    CreatedUserRow::FIELDS.iter().map(|f| f.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_has_every_row_column_then_reason_and_kafka_columns() {
        let sql = transform_sql(Engine::Spark);
        for f in CreatedUserRow::FIELDS {
            assert!(sql.contains(&format!(" AS {}", f.name)), "{} missing", f.name);
        }
        assert!(sql.contains("AS reject_reason"));
        assert!(sql.contains("'spark' AS engine"));
        assert!(transform_sql(Engine::DataFusion).contains("'datafusion' AS engine"));
        assert!(sql.ends_with(&format!("kafka_offset FROM {INPUT_VIEW}")));
    }
}

#[cfg(test)]
mod datafusion_tests {
    use super::*;
    use crate::local::events::{to_batch, Message};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    use datafusion::prelude::SessionContext;
    use pipeline_core::model::UserEvent;

    fn message(event: &UserEvent) -> Message {
        Message { key: Some(event.id.to_string()), value: vec![0], partition: 0, offset: 0, event: Ok(event.to_avro()) }
    }

    async fn run(messages: &[Message]) -> arrow::array::RecordBatch {
        let ctx = SessionContext::new();
        ctx.register_batch(INPUT_VIEW, to_batch(messages).expect("batch")).expect("register");
        let batches = ctx.sql(&transform_sql(Engine::DataFusion)).await.expect("plan").collect().await.expect("run");
        arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
    }

    fn text(batch: &arrow::array::RecordBatch, col: &str, row: usize) -> Option<String> {
        let c = batch.column_by_name(col).unwrap_or_else(|| panic!("{col}"));
        let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).expect("cast");
        let s = c.as_string::<i32>();
        s.is_valid(row).then(|| s.value(row).to_string())
    }

    #[tokio::test]
    async fn enrichment_on_datafusion() {
        let mut e = crate::local::events::tests::sample("7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "Olena.S@Example.UA");
        let out = run(&[message(&e)]).await;
        assert_eq!(out.num_rows(), 1);
        assert_eq!(text(&out, "address", 0).as_deref(), Some("12 Khreshchatyk, Kyiv, Ukraine"));
        assert_eq!(text(&out, "email_domain", 0).as_deref(), Some("example.ua"));
        assert_eq!(text(&out, "nationality", 0).as_deref(), Some("UA"));
        assert_eq!(text(&out, "engine", 0).as_deref(), Some("datafusion"));
        assert_eq!(text(&out, "reject_reason", 0), None);
        // Born 1900-03-01, fetched 2026-02-28: the birthday has not come yet.
        let age = out.column_by_name("age").expect("age").as_primitive::<Int32Type>().value(0);
        assert_eq!(age, 125);
        assert_eq!(out.schema().fields().len(), CreatedUserRow::FIELDS.len() + 1 + KAFKA_COLUMNS.len());

        // Missing address parts are skipped; no parts at all gives NULL.
        e.street_number = None;
        e.street_name = None;
        e.city = None;
        e.country = None;
        assert_eq!(text(&run(&[message(&e)]).await, "address", 0), None);
    }

    #[tokio::test]
    async fn invalid_events_get_a_reason() {
        let bad_email = crate::local::events::tests::sample("7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "not-an-address");
        let mut blank = crate::local::events::tests::sample("7a0eed16-9430-4d68-901f-c0d4c1c3bf01", "a@b.c");
        blank.first_name = "  ".into();
        let undecodable =
            Message { key: None, value: vec![1, 2], partition: 1, offset: 9, event: Err("not registry-framed".into()) };
        let out = run(&[message(&bad_email), message(&blank), undecodable]).await;
        assert_eq!(text(&out, "reject_reason", 0).as_deref(), Some("email is not an address"));
        assert_eq!(text(&out, "reject_reason", 1).as_deref(), Some("first_name is empty"));
        assert_eq!(text(&out, "reject_reason", 2).as_deref(), Some("not registry-framed"));
        assert_eq!(text(&out, "kafka_offset", 2).as_deref(), Some("9"));
    }
}
