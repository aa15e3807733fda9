//! The one way to open a PostgreSQL connection as the pipeline's role.

use std::time::Duration;

use crate::config::PostgresConfig;

/// Why a connection could not be opened; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    #[error("cannot read the PostgreSQL password from {path}: {source} (`pipeline cluster up` writes it)")]
    Password { path: String, source: std::io::Error },
    #[error("cannot connect to PostgreSQL at {host}:{port} as {user}: {source} (is it running? `pipeline cluster up postgres`)")]
    Connect { host: String, port: u16, user: String, source: tokio_postgres::Error },
}

/// Connects as `postgres.user` to `postgres.database`; the connection runs on its own task,
/// which ends when the client is dropped.
pub async fn connect(config: &PostgresConfig, application: &str) -> Result<tokio_postgres::Client, PgConnectError> {
    let password = config
        .password()
        .map_err(|source| PgConnectError::Password { path: config.password_file.display().to_string(), source })?;
    let (client, connection) = tokio_postgres::Config::new()
        .host(&config.host)
        .port(config.port)
        .user(&config.user)
        .password(password)
        .dbname(&config.database)
        .application_name(application)
        .connect_timeout(Duration::from_secs(5))
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|source| PgConnectError::Connect {
            host: config.host.clone(),
            port: config.port,
            user: config.user.clone(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}
