//! Airflow 3 (from `make deps`' virtualenv): it schedules and watches the pipeline, its DAGs
//! calling the `pipeline` binary. Three processes, each its own service and process group:
//! the API server (UI, REST and execution API), the scheduler (LocalExecutor, without its log
//! server, which would listen on every interface: the API server reads task logs from the state
//! folder) and the DAG processor. Metadata lives in the database `airflow.database` of the
//! project's PostgreSQL, owned by the pipeline's role.
//!
//! Secrets are generated on the first start into `<state>/secrets/`: the JWT secret shared by
//! the three processes, the Fernet key, and the admin password, which Airflow's simple auth
//! manager writes to [`PASSWORDS_FILE`]. Readiness: Airflow's health endpoint reports the
//! metadatabase, the scheduler's and the DAG processor's heartbeats.

use std::fs;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use pipeline_core::Config;

use super::common::{http_json, read_or_create_secret, run_tool, ServiceError};
use super::{arg, Ctx, Spec};
use crate::layout::absolute;
use crate::layout::Layout;
use crate::process::Launch;

pub(crate) struct Api;
pub(crate) struct Scheduler;
pub(crate) struct DagProcessor;

/// The Airflow release `make deps` installs; a change re-runs `airflow db migrate`.
pub const AIRFLOW_VERSION: &str = "3.3.2";
/// Where the simple auth manager keeps the generated admin password (JSON: user -> password).
pub const PASSWORDS_FILE: &str = "secrets/airflow-passwords.json";
/// The admin user of the simple auth manager.
pub const ADMIN_USER: &str = "admin";

impl Spec for Api {
    fn ports(&self, config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(vec![config.airflow.port])
    }

    fn ui_url(&self, config: &Config) -> Option<String> {
        Some(base_url(config))
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        airflow_bin(&ctx.layout)
    }

    /// Secrets, the `airflow` database, and the schema (`airflow db migrate`, once per release).
    fn prepare(&self, ctx: &Ctx) -> Result<(), ServiceError> {
        let home = home(&ctx.layout);
        fs::create_dir_all(&home).map_err(|e| ServiceError::io("create", &home, e))?;
        let handle = tokio::runtime::Handle::current();
        handle.block_on(super::postgres::ensure_database(ctx, &ctx.config.airflow.database))?;
        let stamp = home.join("migrated");
        if fs::read_to_string(&stamp).ok().as_deref() == Some(AIRFLOW_VERSION) {
            return Ok(());
        }
        let migrate = cli(ctx)?.args(["db", "migrate"]);
        run_tool(&migrate, "airflow db migrate", &ctx.layout.log("airflow-api"))?;
        fs::write(&stamp, AIRFLOW_VERSION).map_err(|e| ServiceError::io("write", &stamp, e))
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        Ok(cli(ctx)?.args([
            "api-server".to_string(),
            "--host".into(),
            ctx.host().to_string(),
            "--port".into(),
            ctx.config.airflow.port.to_string(),
        ]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(component_healthy(&ctx.config, "metadatabase"))
    }

    /// The simple auth manager writes the generated password world-readable: owner only.
    fn after_ready<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(async move {
            use std::os::unix::fs::PermissionsExt;
            let path = ctx.layout.state.join(PASSWORDS_FILE);
            match fs::set_permissions(&path, fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ServiceError::io("chmod", &path, e)),
                _ => Ok(()),
            }
        })
    }
}

impl Spec for Scheduler {
    fn ports(&self, _config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(Vec::new())
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        airflow_bin(&ctx.layout)
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        Ok(cli(ctx)?.args(["scheduler", "--skip-serve-logs"]))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(component_healthy(&ctx.config, "scheduler"))
    }
}

impl Spec for DagProcessor {
    fn ports(&self, _config: &Config) -> Result<Vec<u16>, ServiceError> {
        Ok(Vec::new())
    }

    fn required_artifact(&self, ctx: &Ctx) -> PathBuf {
        airflow_bin(&ctx.layout)
    }

    fn launch(&self, ctx: &Ctx) -> Result<Launch, ServiceError> {
        Ok(cli(ctx)?.arg("dag-processor"))
    }

    fn probe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(component_healthy(&ctx.config, "dag_processor"))
    }
}

/// The UI and API address.
pub fn base_url(config: &Config) -> String {
    format!("http://{}:{}", config.cluster.host, config.airflow.port)
}

fn airflow_bin(layout: &Layout) -> PathBuf {
    layout.artifacts.join("airflow/venv/bin/airflow")
}

/// AIRFLOW_HOME: airflow.cfg (Airflow writes one on first use; every setting here comes from
/// the environment instead) and the migration stamp.
fn home(layout: &Layout) -> PathBuf {
    layout.data("airflow")
}

/// `airflow` with the environment every component shares: the same database, secrets, DAG
/// folder, executor and API address. Also what tests use to run `airflow dags test`.
pub fn cli(ctx: &Ctx) -> Result<Launch, ServiceError> {
    let cfg = &ctx.config;
    let layout = &ctx.layout;
    let secrets = layout.state.join("secrets");
    let jwt = read_or_create_jwt_secret(&secrets.join("airflow-jwt.secret"))?;
    let fernet = read_or_create_fernet_key(&secrets.join("airflow-fernet.key"))?;
    let pg = &cfg.postgres;
    let password = match &pg.password {
        Some(p) => p.clone(),
        None => read_or_create_secret(&absolute(&pg.password_file))?,
    };
    let url = base_url(cfg);
    let exe = std::env::current_exe().map_err(|e| ServiceError::io("locate", Path::new("the pipeline binary"), e))?;
    let mut launch = Launch::new(airflow_bin(layout));
    launch.cwd = Some(home(layout));
    let settings: Vec<(&str, String)> = vec![
        ("AIRFLOW_HOME", arg(home(layout))),
        ("AIRFLOW__CORE__DAGS_FOLDER", arg(absolute(&cfg.airflow.dags_folder))),
        ("AIRFLOW__CORE__EXECUTOR", "LocalExecutor".into()),
        ("AIRFLOW__CORE__PARALLELISM", cfg.airflow.parallelism.to_string()),
        ("AIRFLOW__CORE__LOAD_EXAMPLES", "False".into()),
        ("AIRFLOW__CORE__FERNET_KEY", fernet),
        ("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", format!("{url}/execution/")),
        ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", format!("{ADMIN_USER}:admin")),
        ("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", arg(layout.state.join(PASSWORDS_FILE))),
        (
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
            format!("postgresql+psycopg2://{}:{}@{}:{}/{}", pg.user, password, pg.host, pg.port, cfg.airflow.database),
        ),
        ("AIRFLOW__API__HOST", ctx.host().to_string()),
        ("AIRFLOW__API__PORT", cfg.airflow.port.to_string()),
        ("AIRFLOW__API__BASE_URL", url.clone()),
        ("AIRFLOW__API__WORKERS", "1".into()),
        ("AIRFLOW__API_AUTH__JWT_SECRET", jwt),
        // A task's calls to the execution API wait this long (default 5 s, too short on a busy
        // 2-core machine: the task is killed when its start call times out).
        ("AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT", "60".into()),
        // New DAG files show up within 30 s (default 5 minutes).
        ("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30".into()),
        ("AIRFLOW__LOGGING__BASE_LOG_FOLDER", arg(layout.state.join("logs/airflow"))),
        // What the DAGs run, with this launcher's configuration as absolute paths (tasks run in
        // other working directories).
        ("PIPELINE_BIN", arg(exe)),
        ("PIPELINE__CLUSTER__STATE_DIR", arg(&layout.state)),
        ("PIPELINE__CLUSTER__ARTIFACTS_DIR", arg(&layout.artifacts)),
        ("PIPELINE__POSTGRES__PASSWORD_FILE", arg(absolute(&pg.password_file))),
        ("PIPELINE__JOB__CHECKPOINT_DIR", arg(absolute(&cfg.job.checkpoint_dir))),
    ];
    for (k, v) in settings {
        launch = launch.env(k, v);
    }
    Ok(launch)
}

/// Airflow's health endpoint: `component` (metadatabase, scheduler, dag_processor) healthy.
async fn component_healthy(config: &Config, component: &str) -> Result<(), ServiceError> {
    let url = format!("{}/api/v2/monitor/health", base_url(config));
    let health = http_json(&url).await?;
    match health.get(component).and_then(|c| c.get("status")).and_then(|s| s.as_str()) {
        Some("healthy") => Ok(()),
        other => Err(ServiceError::probe(format!("{url}: {component} is {}", other.unwrap_or("not reported")))),
    }
}

/// The JWT secret: 64 characters (HS512 wants at least 64 bytes), generated once.
fn read_or_create_jwt_secret(path: &Path) -> Result<String, ServiceError> {
    use rand::distr::{Alphanumeric, SampleString};
    if path.exists() {
        return read_or_create_secret(path);
    }
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 64);
    super::common::write_secret(path, &secret)?;
    Ok(secret)
}

/// A Fernet key (32 random bytes, URL-safe base64), generated once like the other secrets.
fn read_or_create_fernet_key(path: &Path) -> Result<String, ServiceError> {
    if path.exists() {
        return read_or_create_secret(path);
    }
    let key = base64_url(&rand::random::<[u8; 32]>());
    super::common::write_secret(path, &key)?;
    Ok(key)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_the_rfc_vectors() {
        assert_eq!(base64_url(b"f"), "Zg==");
        assert_eq!(base64_url(b"fo"), "Zm8=");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8=");
        assert_eq!(base64_url(&[0u8; 32]).len(), 44);
    }

    #[test]
    fn airflow_listens_on_its_configured_port_only() {
        let c = Config::defaults();
        assert_eq!(Api.ports(&c).ok(), Some(vec![8082]));
        assert_eq!(Scheduler.ports(&c).ok(), Some(vec![]));
        assert_eq!(DagProcessor.ports(&c).ok(), Some(vec![]));
    }
}
