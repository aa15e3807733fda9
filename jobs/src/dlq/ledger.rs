//! The replay ledger: `audit.dlq_replays`, one row per dead letter republished, keyed by the
//! dead letter's topic, partition and offset.
//!
//! It lives in the audit database next to the producer's tables: the audit trail of a user
//! then holds its replays too (join on `user_key`), the ledger is transactional, and `verify`
//! already needs PostgreSQL. The table is created by this module's own idempotent migrations,
//! in the producer's style (ordered, applied once each, under the same advisory lock so the two
//! migrators never run at once) but booked in `audit.dlq_migrations`: the producer's version
//! numbers stay its own.

use std::collections::HashSet;

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::DlqError;

/// Ordered, idempotent migrations of the ledger; applied under the advisory lock, each once.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
    CREATE TABLE IF NOT EXISTS audit.dlq_replays (
        dlq_topic        text        NOT NULL,
        dlq_partition    integer     NOT NULL,
        dlq_offset       bigint      NOT NULL,
        user_key         text,
        reason           text,
        engine           text,
        target_topic     text        NOT NULL,
        target_partition integer     NOT NULL,
        target_offset    bigint      NOT NULL,
        replayed_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
    );
    CREATE INDEX IF NOT EXISTS dlq_replays_user_key ON audit.dlq_replays (user_key);
    "#,
)];

/// The producer's migration lock (`producer/src/audit.rs`): one migrator at a time, whichever
/// crate it belongs to, since both create the `audit` schema.
const MIGRATION_LOCK: i64 = 0x7573_6572_735f_6d69;

fn query_err(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DlqError {
    move |source| DlqError::Query { what, source }
}

/// Applies pending ledger migrations.
pub async fn migrate(client: &mut Client) -> Result<(), DlqError> {
    let tx = client.transaction().await.map_err(query_err("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(query_err("migration lock"))?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS audit; \
         CREATE TABLE IF NOT EXISTS audit.dlq_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(query_err("migration bookkeeping"))?;
    for (version, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM audit.dlq_migrations WHERE version = $1", &[version])
            .await
            .map_err(query_err("migration check"))?
            .is_some();
        if !done {
            tx.batch_execute(sql).await.map_err(query_err("migration"))?;
            tx.execute("INSERT INTO audit.dlq_migrations (version) VALUES ($1)", &[version])
                .await
                .map_err(query_err("migration record"))?;
            tracing::info!(version, "applied dead-letter ledger migration");
        }
    }
    tx.commit().await.map_err(query_err("commit migration"))
}

/// Takes the session-level lock of `dlq_topic`'s replays: two replays of one topic never run
/// at once (each would republish what the other has not recorded yet). Released with the
/// connection, or by [`unlock`].
pub async fn lock(client: &Client, dlq_topic: &str) -> Result<(), DlqError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock(hashtextextended('pipeline-dlq-replay:' || $1, 0))", &[&dlq_topic])
        .await
        .map_err(query_err("replay lock"))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(DlqError::Busy { topic: dlq_topic.to_string() })
    }
}

/// Releases [`lock`].
pub async fn unlock(client: &Client, dlq_topic: &str) -> Result<(), DlqError> {
    client
        .execute("SELECT pg_advisory_unlock(hashtextextended('pipeline-dlq-replay:' || $1, 0))", &[&dlq_topic])
        .await
        .map_err(query_err("replay unlock"))?;
    Ok(())
}

/// The positions (partition, offset) of `dlq_topic` already replayed; empty when the ledger
/// does not exist yet (read-only callers do not create it).
pub async fn replayed(client: &Client, dlq_topic: &str) -> Result<HashSet<(i32, i64)>, DlqError> {
    let rows = match client
        .query("SELECT dlq_partition, dlq_offset FROM audit.dlq_replays WHERE dlq_topic = $1", &[&dlq_topic])
        .await
    {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(HashSet::new()),
        Err(e) => return Err(query_err("reading the replay ledger")(e)),
    };
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The ids among `ids` audited for `topic` (empty when nothing was ever audited).
pub async fn audited(client: &Client, topic: &str, ids: &[uuid::Uuid]) -> Result<HashSet<uuid::Uuid>, DlqError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = match client
        .query("SELECT user_id FROM audit.users_raw WHERE topic = $1 AND user_id = ANY($2)", &[&topic, &ids])
        .await
    {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(HashSet::new()),
        Err(e) => return Err(query_err("reading audit.users_raw")(e)),
    };
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One republished dead letter.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub user_key: Option<String>,
    pub reason: Option<String>,
    pub engine: Option<String>,
    pub target_partition: i32,
    pub target_offset: i64,
}

/// Records delivered replays (one statement; a row already there is kept as it was).
pub async fn record(client: &Client, dlq_topic: &str, target_topic: &str, done: &[Replayed]) -> Result<(), DlqError> {
    if done.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = done.iter().map(|r| r.dlq_partition).collect();
    let offsets: Vec<i64> = done.iter().map(|r| r.dlq_offset).collect();
    let keys: Vec<Option<&str>> = done.iter().map(|r| r.user_key.as_deref()).collect();
    let reasons: Vec<Option<&str>> = done.iter().map(|r| r.reason.as_deref()).collect();
    let engines: Vec<Option<&str>> = done.iter().map(|r| r.engine.as_deref()).collect();
    let target_partitions: Vec<i32> = done.iter().map(|r| r.target_partition).collect();
    let target_offsets: Vec<i64> = done.iter().map(|r| r.target_offset).collect();
    client
        .execute(
            "INSERT INTO audit.dlq_replays \
               (dlq_topic, dlq_partition, dlq_offset, user_key, reason, engine, target_topic, target_partition, target_offset) \
             SELECT $1, p, o, k, r, e, $2, tp, t_o \
             FROM UNNEST($3::int[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[]) \
               AS t(p, o, k, r, e, tp, t_o) \
             ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO NOTHING",
            &[
                &dlq_topic,
                &target_topic,
                &partitions,
                &offsets,
                &keys,
                &reasons,
                &engines,
                &target_partitions,
                &target_offsets,
            ],
        )
        .await
        .map_err(query_err("recording replays"))?;
    Ok(())
}
