//! PostgreSQL audit store and transactional outbox.
//!
//! Every accepted user is written to `audit.users_raw` (raw payload without credentials, the
//! framed Kafka value, fetch time) and queued in `audit.outbox`, in one statement, *before* it
//! is published. Delivery reports then move rows from the outbox to `audit.deliveries` with
//! their partition and offset. Rows still in the outbox after a crash are found by
//! [`AuditStore::unpublished`] and published first on the next start. Rejected records go to
//! `audit.rejected` with their reason. The view `audit.users` joins each audit row with its
//! delivery.
//!
//! The audit rows are written once and never updated: marking a wide row published would
//! rewrite all of it (payload included) under MVCC, which cost more than the insert itself.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pipeline_core::config::PostgresConfig;
use tokio_postgres::Client;
use uuid::Uuid;

/// Ordered, idempotent migrations; applied under an advisory lock, each once.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
    CREATE SCHEMA IF NOT EXISTS audit;
    -- One row per accepted user: the audit trail and the transactional outbox. `topic` is the
    -- row's destination, so recovery publishes each row where it was meant to go. `payload`
    -- is `json` (validated, kept verbatim): cheaper to write than `jsonb`, still queryable.
    CREATE TABLE IF NOT EXISTS audit.users_raw (
        seq             bigserial PRIMARY KEY,
        user_id         uuid        NOT NULL UNIQUE,
        source          text        NOT NULL,
        payload         json        NOT NULL,
        topic           text        NOT NULL,
        kafka_key       text        NOT NULL,
        kafka_value     bytea       NOT NULL,
        schema_id       integer     NOT NULL,
        fetched_at      timestamptz NOT NULL,
        audited_at      timestamptz NOT NULL DEFAULT now(),
        published_at    timestamptz,
        kafka_partition integer,
        kafka_offset    bigint
    );
    CREATE INDEX IF NOT EXISTS users_raw_unpublished ON audit.users_raw (topic, seq) WHERE published_at IS NULL;
    CREATE TABLE IF NOT EXISTS audit.rejected (
        seq         bigserial PRIMARY KEY,
        source      text        NOT NULL,
        reason      text        NOT NULL,
        payload     text        NOT NULL,
        fetched_at  timestamptz NOT NULL,
        rejected_at timestamptz NOT NULL DEFAULT now()
    );
    "#,
    ),
    (
        2,
        r#"
    -- The publish state leaves the wide audit row: pending rows are a narrow outbox (deleted
    -- once delivered), deliveries an append-only table. Existing state is carried over.
    CREATE TABLE audit.outbox (
        seq   bigint PRIMARY KEY,
        topic text   NOT NULL
    );
    CREATE TABLE audit.deliveries (
        seq             bigint      PRIMARY KEY,
        kafka_partition integer     NOT NULL,
        kafka_offset    bigint      NOT NULL,
        published_at    timestamptz NOT NULL DEFAULT now()
    );
    INSERT INTO audit.outbox (seq, topic) SELECT seq, topic FROM audit.users_raw WHERE published_at IS NULL;
    INSERT INTO audit.deliveries (seq, kafka_partition, kafka_offset, published_at)
        SELECT seq, coalesce(kafka_partition, -1), coalesce(kafka_offset, -1), published_at
        FROM audit.users_raw WHERE published_at IS NOT NULL;
    DROP INDEX audit.users_raw_unpublished;
    ALTER TABLE audit.users_raw DROP COLUMN published_at, DROP COLUMN kafka_partition, DROP COLUMN kafka_offset;
    -- Every audited user with where (and whether) it was published.
    CREATE VIEW audit.users AS
        SELECT r.*, d.kafka_partition, d.kafka_offset, d.published_at
        FROM audit.users_raw r LEFT JOIN audit.deliveries d USING (seq);
    "#,
    ),
];

/// Arbitrary constant for `pg_advisory_xact_lock`: serialises concurrent migrators.
const MIGRATION_LOCK: i64 = 0x7573_6572_735f_6d69;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Connect(#[from] pipeline_core::postgres::PgConnectError),
    #[error("PostgreSQL {what} failed: {source}")]
    Query { what: &'static str, source: tokio_postgres::Error },
}

/// One user to audit: what goes to Kafka and what is kept for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub user_id: Uuid,
    pub source: &'static str,
    /// The raw record as JSON text, credentials removed.
    pub payload: String,
    pub kafka_value: Vec<u8>,
    pub schema_id: u32,
    pub fetched_at: DateTime<Utc>,
}

/// An audited, not yet published outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub key: String,
    pub value: Vec<u8>,
    pub source: String,
}

/// Where a row landed in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: i64,
    pub partition: i32,
    pub offset: i64,
}

/// The outbox rows of the records that got a sequence number, in sequence order (the first
/// copy of an id repeated in the batch gets the row).
fn outbox_rows(records: Vec<AuditRecord>, seqs: HashMap<Uuid, i64>) -> Vec<OutboxRow> {
    let mut out: Vec<OutboxRow> = records
        .into_iter()
        .filter_map(|r| {
            let seq = *seqs.get(&r.user_id)?;
            Some(OutboxRow { seq, key: r.user_id.to_string(), value: r.kafka_value, source: r.source.to_string() })
        })
        .collect();
    out.sort_by_key(|r| r.seq);
    out.dedup_by_key(|r| r.seq);
    out
}

/// Connection to the audit database.
pub struct AuditStore {
    client: Client,
}

fn query_err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AuditError {
    move |source| AuditError::Query { what, source }
}

impl AuditStore {
    /// Connects with the pipeline role and applies pending migrations.
    pub async fn connect(config: &PostgresConfig) -> Result<AuditStore, AuditError> {
        let client = pipeline_core::postgres::connect(config, "pipeline-producer").await?;
        let mut store = AuditStore { client };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&mut self) -> Result<(), AuditError> {
        let tx = self.client.transaction().await.map_err(query_err("begin migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(query_err("migration lock"))?;
        tx.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS audit; \
             CREATE TABLE IF NOT EXISTS audit.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(query_err("migration bookkeeping"))?;
        for (version, sql) in MIGRATIONS {
            let done = tx
                .query_opt("SELECT 1 FROM audit.schema_migrations WHERE version = $1", &[version])
                .await
                .map_err(query_err("migration check"))?
                .is_some();
            if !done {
                tx.batch_execute(sql).await.map_err(query_err("migration"))?;
                tx.execute("INSERT INTO audit.schema_migrations (version) VALUES ($1)", &[version])
                    .await
                    .map_err(query_err("migration record"))?;
                tracing::info!(version, "applied audit migration");
            }
        }
        tx.commit().await.map_err(query_err("commit migration"))
    }

    /// Audits a batch bound for `topic` and queues it in the outbox, in one statement. Users
    /// already audited (same id, or repeated in the batch) are skipped; returns the outbox rows
    /// actually inserted, in order (the records' Kafka values are moved into them, not read
    /// back).
    ///
    /// Measured against the alternative of a binary `COPY` (after looking up which ids exist,
    /// to keep the skip): the single `INSERT ... ON CONFLICT DO NOTHING` was faster here.
    pub async fn insert(&self, topic: &str, records: Vec<AuditRecord>) -> Result<Vec<OutboxRow>, AuditError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = records.iter().map(|r| r.user_id).collect();
        let sources: Vec<&str> = records.iter().map(|r| r.source).collect();
        let payloads: Vec<&str> = records.iter().map(|r| r.payload.as_str()).collect();
        let keys: Vec<String> = records.iter().map(|r| r.user_id.to_string()).collect();
        let values: Vec<&[u8]> = records.iter().map(|r| r.kafka_value.as_slice()).collect();
        let schema_ids: Vec<i32> = records.iter().map(|r| r.schema_id as i32).collect();
        let fetched: Vec<DateTime<Utc>> = records.iter().map(|r| r.fetched_at).collect();
        let rows = self
            .client
            .query(
                "WITH audited AS ( \
                   INSERT INTO audit.users_raw (user_id, source, payload, kafka_key, kafka_value, schema_id, fetched_at, topic) \
                   SELECT i, s, p::json, k, v, sid, f, $8 \
                   FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::int[], $7::timestamptz[]) \
                     AS t(i, s, p, k, v, sid, f) \
                   ON CONFLICT (user_id) DO NOTHING \
                   RETURNING seq, user_id), \
                 queued AS (INSERT INTO audit.outbox (seq, topic) SELECT seq, $8 FROM audited) \
                 SELECT seq, user_id FROM audited",
                &[&ids, &sources, &payloads, &keys, &values, &schema_ids, &fetched, &topic],
            )
            .await
            .map_err(query_err("audit insert"))?;
        Ok(outbox_rows(records, rows.iter().map(|r| (r.get(1), r.get(0))).collect()))
    }

    /// Records rejected input with its reason.
    pub async fn reject(
        &self,
        source: &str,
        rejected: &[(String, String)],
        fetched_at: DateTime<Utc>,
    ) -> Result<(), AuditError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let reasons: Vec<&str> = rejected.iter().map(|(r, _)| r.as_str()).collect();
        let payloads: Vec<&str> = rejected.iter().map(|(_, p)| p.as_str()).collect();
        self.client
            .execute(
                "INSERT INTO audit.rejected (source, reason, payload, fetched_at) \
                 SELECT $1, reason, payload, $4 FROM UNNEST($2::text[], $3::text[]) AS t(reason, payload)",
                &[&source, &reasons, &payloads, &fetched_at],
            )
            .await
            .map_err(query_err("audit reject"))?;
        Ok(())
    }

    /// Marks delivered rows published: out of the outbox, into `audit.deliveries` with where
    /// they landed (one statement).
    pub async fn mark_published(&self, published: &[Published]) -> Result<(), AuditError> {
        if published.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = published.iter().map(|p| p.seq).collect();
        let partitions: Vec<i32> = published.iter().map(|p| p.partition).collect();
        let offsets: Vec<i64> = published.iter().map(|p| p.offset).collect();
        self.client
            .execute(
                "WITH sent AS (DELETE FROM audit.outbox WHERE seq = ANY($1)) \
                 INSERT INTO audit.deliveries (seq, kafka_partition, kafka_offset) \
                 SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::bigint[]) ON CONFLICT (seq) DO NOTHING",
                &[&seqs, &partitions, &offsets],
            )
            .await
            .map_err(query_err("mark published"))?;
        Ok(())
    }

    /// The oldest audited rows bound for `topic` not yet published (the outbox backlog).
    pub async fn unpublished(&self, topic: &str, after_seq: i64, limit: i64) -> Result<Vec<OutboxRow>, AuditError> {
        let rows = self
            .client
            .query(
                "SELECT r.seq, r.kafka_key, r.kafka_value, r.source \
                 FROM audit.outbox o JOIN audit.users_raw r USING (seq) \
                 WHERE o.topic = $1 AND o.seq > $2 ORDER BY o.seq LIMIT $3",
                &[&topic, &after_seq, &limit],
            )
            .await
            .map_err(query_err("outbox scan"))?;
        Ok(rows.iter().map(|r| OutboxRow { seq: r.get(0), key: r.get(1), value: r.get(2), source: r.get(3) }).collect())
    }

    /// Direct access for reconciliation and tests.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
