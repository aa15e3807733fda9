//! The audit store: audited users, outbox backlog, rejected records. One connection, every 10 s.

use std::time::Duration;

use pipeline_core::Config;
use tokio_util::sync::CancellationToken;

use crate::state::{self, AuditView, Shared};

/// Above this many rows (by the planner's estimate), `audited` is the estimate, not a count.
const EXACT_BELOW: f32 = 2_000_000.0;

async fn counts(client: &tokio_postgres::Client) -> Result<AuditView, String> {
    let err = |e: tokio_postgres::Error| format!("audit counts: {e}");
    let estimate: f32 = client
        .query_one(
            "SELECT coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass('audit.users_raw')), 0)::real",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    let exact = estimate < EXACT_BELOW;
    let audited_sql = if exact { "(SELECT count(*) FROM audit.users_raw)" } else { "0::bigint" };
    let row = client
        .query_one(
            &format!(
                "SELECT {audited_sql}, (SELECT count(*) FROM audit.outbox), (SELECT count(*) FROM audit.rejected)"
            ),
            &[],
        )
        .await
        .map_err(err)?;
    Ok(AuditView {
        audited: if exact { row.get(0) } else { estimate as i64 },
        audited_is_estimate: !exact,
        outbox_pending: row.get(1),
        rejected: row.get(2),
    })
}

pub async fn run(config: Config, shared: Shared, shutdown: CancellationToken) {
    let mut client: Option<tokio_postgres::Client> = None;
    while !shutdown.is_cancelled() {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match pipeline_core::postgres::connect(&config.postgres, "pipeline-dashboard").await {
                Ok(c) => {
                    // Counts never hold the database up for long.
                    if let Err(e) = c.batch_execute("SET statement_timeout = '5s'").await {
                        tracing::warn!("cannot set statement_timeout: {e}");
                    }
                    Some(c)
                }
                Err(e) => {
                    state::update(&shared, |s| s.audit.fail(e.to_string()));
                    None
                }
            };
        }
        if let Some(c) = &client {
            match counts(c).await {
                Ok(v) => state::update(&shared, |s| s.audit.set(v)),
                Err(e) => state::update(&shared, |s| s.audit.fail(e)),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
