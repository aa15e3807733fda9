//! A look at the result table: its row count and a few rows (for `make demo`).

use futures::StreamExt;
use pipeline_core::Config;

/// A few columns of a row, as text.
pub type SampleRow = Vec<String>;

/// Columns shown by [`sample`].
pub const SAMPLE_COLUMNS: &[&str] =
    &["first_name", "last_name", "age", "nationality", "email_domain", "address", "engine"];

/// The number of rows in the table and up to `limit` of them.
pub async fn sample(config: &Config, limit: usize) -> Result<(usize, Vec<SampleRow>), String> {
    let c = &config.cassandra;
    let session = pipeline_core::clients::cassandra::session(c).await.map_err(|e| e.to_string())?;
    let table = format!("{}.{}", c.keyspace, c.table);
    type Shown = (String, String, Option<i32>, Option<String>, Option<String>, Option<String>, String);
    let mut rows = session
        .query_iter(format!("SELECT {} FROM {table}", SAMPLE_COLUMNS.join(", ")), &[])
        .await
        .map_err(|e| format!("cannot read {table}: {e}"))?
        .rows_stream::<Shown>()
        .map_err(|e| e.to_string())?;
    let (mut count, mut shown) = (0, Vec::new());
    while let Some(row) = rows.next().await {
        let (first, last, age, nat, domain, address, engine) = row.map_err(|e| e.to_string())?;
        count += 1;
        if shown.len() < limit {
            let opt = |v: Option<String>| v.unwrap_or_default();
            shown.push(vec![
                first,
                last,
                age.map(|a| a.to_string()).unwrap_or_default(),
                opt(nat),
                opt(domain),
                opt(address),
                engine,
            ]);
        }
    }
    Ok((count, shown))
}
