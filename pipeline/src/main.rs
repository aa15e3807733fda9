//! `pipeline`: one binary whose subcommands map to the stages of the pipeline.
//!
//! | subcommand        | crate                | what it does                                     |
//! |-------------------|----------------------|--------------------------------------------------|
//! | `cluster ...`     | `pipeline-cluster`   | Kafka, registry, PostgreSQL, Cassandra, Spark    |
//! | `config check`    | `pipeline-core`      | loads every config layer, prints every error     |

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_cluster::{Cluster, Outcome, Service};
use pipeline_core::Config;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Real-time user-data pipeline: RandomUser -> Kafka -> Spark/DataFusion -> Cassandra"
)]
struct Cli {
    /// User config file (TOML) layered over the defaults; env PIPELINE__SECTION__KEY wins over it.
    #[arg(long, global = true, env = "PIPELINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The real services as local processes (no Docker).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start every service (or the named ones and their dependencies) and wait until ready.
    Up { services: Vec<Service> },
    /// Stop what `up` started (all, or the named services).
    Down { services: Vec<Service> },
    /// A table of services: pid, ports, health, memory, UI.
    Status,
    /// The last lines of a service's log (all services when none is named).
    Logs {
        service: Option<Service>,
        /// Number of lines per service.
        #[arg(short = 'n', long, default_value_t = 40)]
        lines: usize,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Load every layer and print all errors at once; exit 1 on any.
    Check,
    /// Print the effective configuration (secrets omitted).
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref().or(pipeline_core::config::default_user_file().as_deref())) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    pipeline_core::telemetry::init_tracing(&config.telemetry);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config { action: ConfigAction::Check } => {
            // Loading already validated every layer; reaching here means no error.
            println!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action: ConfigAction::Show } => {
            println!("{}", toml::to_string_pretty(&config).context("cannot render the configuration")?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster { action } => cluster(action, Cluster::new(config)).await,
    }
}

async fn cluster(action: ClusterAction, cluster: Cluster) -> anyhow::Result<ExitCode> {
    match action {
        ClusterAction::Up { services } => {
            let started = std::time::Instant::now();
            let outcomes = cluster.up(&services).await?;
            let fresh = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Started { .. })).count();
            println!(
                "cluster up: {} service(s) ready ({fresh} started, {} already running) in {:.1} s",
                outcomes.len(),
                outcomes.len() - fresh,
                started.elapsed().as_secs_f64()
            );
            print_status(&cluster).await;
            Ok(ExitCode::SUCCESS)
        }
        ClusterAction::Down { services } => {
            let stopped = cluster.down(&services);
            let names: Vec<&str> = stopped.iter().map(|s| s.name()).collect();
            println!(
                "cluster down: stopped {}",
                if names.is_empty() { "nothing (no service was running)".to_string() } else { names.join(", ") }
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterAction::Status => {
            let healthy = print_status(&cluster).await;
            Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        ClusterAction::Logs { service, lines } => {
            let services: Vec<Service> = service.map(|s| vec![s]).unwrap_or_else(|| Service::ALL.to_vec());
            for s in services {
                let (path, tail) = cluster.logs(s, lines);
                println!("==> {} ({}) <==", s, path.display());
                for line in tail {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints the status table; true when every service is healthy.
async fn print_status(cluster: &Cluster) -> bool {
    let rows = cluster.status().await;
    println!("{:<14} {:>8} {:<14} {:<8} {:>8}  UI / DETAIL", "SERVICE", "PID", "PORTS", "HEALTHY", "RSS MiB");
    let mut total = 0;
    for r in &rows {
        total += r.rss_mib;
        let ports = r.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let extra = if r.healthy { r.ui.clone().unwrap_or_default() } else { r.detail.clone() };
        println!(
            "{:<14} {:>8} {:<14} {:<8} {:>8}  {}",
            r.service.name(),
            pid,
            ports,
            if r.healthy { "yes" } else { "no" },
            r.rss_mib,
            extra
        );
    }
    println!("{:<14} {:>8} {:<14} {:<8} {:>8}", "total", "", "", "", total);
    rows.iter().all(|r| r.healthy)
}
