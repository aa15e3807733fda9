//! PostgreSQL: the Debian binaries, a data folder under the state dir, run as the `postgres`
//! system user (initdb and postgres refuse root). After start, the pipeline's role (password
//! generated into the state folder's secrets) and database are created.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use pipeline_core::Config;

use super::common::{read_or_create_secret, run_tool, ServiceError};
use super::{arg, Ctx, Spec};
use crate::process::Launch;

pub(crate) struct Postgres;

impl Spec for Postgres {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(vec![config.postgres.port])
    }

    fn required_artifact(&self, _ctx: &Ctx) -> PathBuf {
        postgres_bin("postgres")
    }

    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        let data = ctx.layout.data("postgres");
        let socket_dir = socket_dir(ctx);
        fs::create_dir_all(&socket_dir).map_err(|e| ServiceError::io("create", &socket_dir, e))?;
        chown_to_postgres(&[&data, &socket_dir])?;
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        let initdb = Launch { user: Some("postgres".into()), ..Launch::new(postgres_bin("initdb")) }.args([
            "-D".to_string(),
            arg(&data),
            "-U".into(),
            "postgres".into(),
            "--auth-local=trust".into(),
            "--auth-host=scram-sha-256".into(),
            "-E".into(),
            "UTF8".into(),
            "--no-locale".into(),
        ]);
        run_tool(&initdb, "initdb", &ctx.layout.log("postgres"))
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        let setting = |s: String| ["-c".to_string(), s];
        let mut args = vec!["-D".to_string(), arg(ctx.layout.data("postgres"))];
        for s in [
            format!("listen_addresses={}", ctx.host()),
            format!("port={}", ctx.config.postgres.port),
            format!("unix_socket_directories={}", arg(socket_dir(ctx))),
            "shared_buffers=128MB".into(),
            "max_connections=100".into(),
        ] {
            args.extend(setting(s));
        }
        Ok(Launch { user: Some("postgres".into()), ..Launch::new(postgres_bin("postgres")) }.args(args))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            let client = admin(ctx).await?;
            client.simple_query("SELECT 1").await.map(|_| ()).map_err(ServiceError::probe)
        })
    }

    fn after_ready<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(ensure_role_and_database(ctx))
    }
}

fn socket_dir(ctx: &Ctx) -> PathBuf {
    ctx.layout.run_dir().join("postgres")
}

/// The superuser, over the unix socket (trust auth, local only).
async fn admin(ctx: &Ctx) -> Result<tokio_postgres::Client, ServiceError> {
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(socket_dir(ctx))
        .port(ctx.config.postgres.port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(3));
    let (client, connection) = pg.connect(tokio_postgres::NoTls).await.map_err(ServiceError::probe)?;
    tokio::spawn(connection);
    Ok(client)
}

/// The pipeline's role with its password (an override from the environment, else the secret
/// file, generated on the first `up`) and its database.
async fn ensure_role_and_database(ctx: &Ctx) -> Result<(), ServiceError> {
    let pg = &ctx.config.postgres;
    let password = match &pg.password {
        Some(p) => p.clone(),
        None => read_or_create_secret(&pg.password_file)?,
    };
    let client = admin(ctx).await?;
    let exists = |sql: &'static str, name: String| {
        let client = &client;
        async move {
            client
                .query(sql, &[&name])
                .await
                .map(|rows| !rows.is_empty())
                .map_err(|e| ServiceError::request(format!("look up {name}"), e))
        }
    };
    let verb =
        if exists("SELECT 1 FROM pg_roles WHERE rolname = $1", pg.user.clone()).await? { "ALTER" } else { "CREATE" };
    let quoted = password.replace('\'', "''");
    client
        .batch_execute(&format!("{verb} ROLE {} LOGIN PASSWORD '{quoted}'", pg.user))
        .await
        .map_err(|e| ServiceError::request(format!("set up role {}", pg.user), e))?;
    if !exists("SELECT 1 FROM pg_database WHERE datname = $1", pg.database.clone()).await? {
        client
            .batch_execute(&format!("CREATE DATABASE {} OWNER {}", pg.database, pg.user))
            .await
            .map_err(|e| ServiceError::request(format!("create database {}", pg.database), e))?;
    }
    Ok(())
}

/// Another database owned by the pipeline's role (Airflow's metadata), created if missing.
pub(crate) async fn ensure_database(ctx: &Ctx, database: &str) -> Result<(), ServiceError> {
    let client = admin(ctx).await?;
    let rows = client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|e| ServiceError::request(format!("look up database {database}"), e))?;
    if rows.is_empty() {
        client
            .batch_execute(&format!("CREATE DATABASE {database} OWNER {}", ctx.config.postgres.user))
            .await
            .map_err(|e| ServiceError::request(format!("create database {database}"), e))?;
    }
    Ok(())
}

/// A PostgreSQL binary of the Debian package (the newest installed major version).
pub fn postgres_bin(name: &str) -> PathBuf {
    let root = PathBuf::from("/usr/lib/postgresql");
    let newest = fs::read_dir(&root)
        .ok()
        .and_then(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).max());
    match newest {
        Some(v) => root.join(v.to_string()).join("bin").join(name),
        None => PathBuf::from(name),
    }
}

fn chown_to_postgres(paths: &[&Path]) -> Result<(), ServiceError> {
    use std::os::unix::fs::PermissionsExt;
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let (uid, gid) = crate::process::system_user("postgres").map_err(|e| {
        ServiceError::request(
            "find the postgres system user",
            format!("{e}: install PostgreSQL from the distribution (apt-get install postgresql), which creates it"),
        )
    })?;
    for p in paths {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| ServiceError::io("chown", p, e))?;
        fs::set_permissions(p, fs::Permissions::from_mode(0o700)).map_err(|e| ServiceError::io("chmod", p, e))?;
    }
    Ok(())
}
