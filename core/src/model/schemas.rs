//! The other derived forms of a record: Arrow schema, Spark DDL and CQL statements.

#[cfg(feature = "arrow")]
use std::sync::Arc;

#[cfg(feature = "arrow")]
use arrow::datatypes::{Field as ArrowField, Schema as ArrowSchema};

use super::field::Field;

/// The Arrow schema of a record.
#[cfg(feature = "arrow")]
pub fn arrow_schema(fields: &[Field]) -> Arc<ArrowSchema> {
    Arc::new(ArrowSchema::new(
        fields.iter().map(|f| ArrowField::new(f.name, f.ty.arrow(), f.nullable)).collect::<Vec<_>>(),
    ))
}

/// A Spark DDL schema string (`name TYPE [NOT NULL], ...`).
pub fn spark_ddl(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}{}", f.name, f.ty.spark(), if f.nullable { "" } else { " NOT NULL" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A CQL `CREATE TABLE IF NOT EXISTS` statement; the first field is the primary key.
pub fn cql_create_table(keyspace: &str, table: &str, fields: &[Field]) -> String {
    let columns: Vec<String> = fields.iter().map(|f| format!("{} {}", quote_cql(f.name), f.ty.cql())).collect();
    let pk = fields.first().map(|f| quote_cql(f.name)).unwrap_or_default();
    format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({}, PRIMARY KEY ({pk}))", columns.join(", "))
}

/// A prepared-statement `INSERT` of every field, in field order (one `?` per field).
pub fn cql_insert(keyspace: &str, table: &str, fields: &[Field]) -> String {
    let columns: Vec<String> = fields.iter().map(|f| quote_cql(f.name)).collect();
    let marks = vec!["?"; fields.len()].join(", ");
    format!("INSERT INTO {keyspace}.{table} ({}) VALUES ({marks})", columns.join(", "))
}

/// Quotes CQL identifiers that are reserved words (`timestamp` is one of the seed's columns).
pub(super) fn quote_cql(name: &str) -> String {
    const RESERVED: &[&str] = &["timestamp", "date", "time", "key", "token"];
    if RESERVED.contains(&name) {
        format!("\"{name}\"")
    } else {
        name.to_string()
    }
}

/// `CREATE KEYSPACE IF NOT EXISTS` with SimpleStrategy (single-node development cluster).
pub fn cql_create_keyspace(keyspace: &str, replication_factor: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    )
}
