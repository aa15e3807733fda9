//! `pipeline`: one binary whose subcommands map to the stages of the pipeline.
//!
//! | subcommand        | crate                | what it does                                     |
//! |-------------------|----------------------|--------------------------------------------------|
//! | `cluster ...`     | `pipeline-cluster`   | Kafka, registry, PostgreSQL, Cassandra, Spark    |
//! | `produce`         | `pipeline-producer`  | users -> PostgreSQL audit outbox -> Kafka        |
//! | `submit`, `jobs`  | `pipeline-jobs`      | the Spark streaming job through Spark Connect    |
//! | `local`           | `pipeline-jobs`      | the same transform on DataFusion, no Spark       |
//! | `verify`          | `pipeline-jobs`      | audit ids vs Kafka vs Cassandra, diffs reported  |
//! | `config check`    | `pipeline-core`      | loads every config layer, prints every error     |

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_cluster::{Cluster, Outcome, Service};
use pipeline_core::config::SourceKind;
use pipeline_core::Config;
use pipeline_jobs::spark;
use pipeline_producer::ProduceOptions;
use std::time::Duration;

/// mimalloc: the producer's JSON handling and the engines' batches are allocation-heavy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Fetch users (RandomUser API or synthetic), audit them in PostgreSQL, publish to Kafka.
    Produce(ProduceArgs),
    /// Start the Spark streaming job (Kafka -> transform -> Cassandra) on the cluster.
    Submit {
        /// Print a progress line per micro-batch until Ctrl-C (the job keeps running).
        #[arg(long)]
        follow: bool,
    },
    /// The Spark job's queries: progress, or a graceful stop.
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Run the transform locally on DataFusion: Kafka -> Arrow -> DataFusion -> Cassandra.
    Local {
        /// Exit 0 once the group has consumed to the end of every partition and written it all.
        #[arg(long)]
        until_idle: bool,
        /// Exit after this many records.
        #[arg(long)]
        max_records: Option<u64>,
    },
    /// Reconcile the audit store, the Kafka topic and Cassandra; exit 1 on any loss.
    Verify,
    /// The number of rows in the Cassandra table and a few of them.
    Sample {
        /// Rows to show.
        #[arg(long, default_value_t = 5)]
        limit: usize,
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
enum JobsAction {
    /// Each running query: state and last progress (rows/s, batch time, offsets).
    Status,
    /// Stop the job's queries gracefully (a later submit resumes from the checkpoint).
    Stop,
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Where users come from (default: producer.source in the config).
    #[arg(long, value_parser = parse_source)]
    source: Option<SourceKind>,
    /// Number of users to fetch. Required unless --interval is given.
    #[arg(long)]
    count: Option<u64>,
    /// Upper bound on records per second (default: producer.rate; 0 = unlimited).
    #[arg(long)]
    rate: Option<f64>,
    /// Users per fetch and per audit/publish batch (default: producer.batch_size).
    #[arg(long)]
    batch: Option<usize>,
    /// Interval mode: fetch one batch every SECS seconds until stopped (or until --count);
    /// serves Prometheus metrics on producer.metrics_addr meanwhile.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "0")]
    interval: Option<u64>,
    /// Seed of the synthetic source (default: producer.synthetic_seed; 0 = random).
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_source(s: &str) -> Result<SourceKind, String> {
    match s {
        "randomuser" => Ok(SourceKind::RandomUser),
        "synthetic" => Ok(SourceKind::Synthetic),
        other => Err(format!("`{other}` is not a source: use randomuser or synthetic")),
    }
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
    spark::quiet_client_panics();
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
        Command::Produce(args) => produce(args, config).await,
        Command::Submit { follow } => submit(follow, config).await,
        Command::Sample { limit } => {
            let (count, rows) = pipeline_jobs::show::sample(&config, limit).await.map_err(anyhow::Error::msg)?;
            let table = [pipeline_jobs::show::SAMPLE_COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
            let all: Vec<&Vec<String>> = table.iter().chain(rows.iter()).collect();
            let widths: Vec<usize> = (0..table[0].len())
                .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).min(60))
                .collect();
            for r in all {
                let cells: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{:<w$}", c.chars().take(60).collect::<String>(), w = *w))
                    .collect();
                println!("{}", cells.join("  "));
            }
            println!("{count} row(s) in {}.{}", config.cassandra.keyspace, config.cassandra.table);
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let report = pipeline_jobs::verify::verify(&config).await?;
            println!("{report}");
            Ok(if report.lost() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Local { until_idle, max_records } => {
            let addr: std::net::SocketAddr = config.local.metrics_addr.parse().context("local.metrics_addr")?;
            pipeline_core::telemetry::serve_metrics(addr).context("cannot serve /metrics")?;
            let opts = pipeline_jobs::local::LocalOptions { until_idle, max_records };
            let summary = pipeline_jobs::local::run(&config, opts, pipeline_core::shutdown::on_signals()).await?;
            println!(
                "consumed {} | written {} | dead-lettered {} | {} batch(es)",
                summary.consumed, summary.written, summary.dead_lettered, summary.batches
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { action: JobsAction::Status } => {
            let queries = spark::status(&config).await?;
            if queries.is_empty() {
                println!("no query running (start one with `pipeline submit`)");
            }
            for q in &queries {
                print_query(q);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { action: JobsAction::Stop } => {
            let stopped = spark::stop(&config).await?;
            if stopped.is_empty() {
                println!("nothing to stop: the job is not running");
            } else {
                println!("stopped {} (submit again to resume from the checkpoint)", stopped.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_query(q: &spark::QueryInfo) {
    println!("{} {} id={} run={}", if q.active { "RUNNING" } else { "STOPPED" }, q.name, q.id, q.run_id);
    match &q.last_progress {
        Some(p) => println!("  last batch: {}", spark::progress_line(p)),
        None => println!("  no batch completed yet"),
    }
}

async fn submit(follow: bool, config: Config) -> anyhow::Result<ExitCode> {
    let submitted = spark::submit(&config).await?;
    if submitted.already_running {
        println!("the job is already running; nothing started");
    } else {
        println!("submitted with schema id {} of {}", submitted.schema_id, config.registry.subject);
    }
    print_query(&submitted.query);
    print_query(&submitted.dead_letter);
    println!("Spark master UI:      http://127.0.0.1:{}", config.spark.master_ui_port);
    println!("application UI:       http://127.0.0.1:{}", config.spark.app_ui_port);
    println!("streaming queries UI: http://127.0.0.1:{}/StreamingQuery/", config.spark.app_ui_port);
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    println!("following progress; Ctrl-C stops following, the job keeps running");
    let shutdown = pipeline_core::shutdown::on_signals();
    let mut last_batch = -1;
    while !shutdown.is_cancelled() {
        for q in spark::status(&config).await? {
            let batch = q.last_progress.as_ref().and_then(|p| p.get("batchId")?.as_i64()).unwrap_or(-1);
            if q.name == config.job.query_name && batch > last_batch {
                last_batch = batch;
                println!("{}", spark::progress_line(q.last_progress.as_ref().unwrap_or(&serde_json::Value::Null)));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn produce(args: ProduceArgs, config: Config) -> anyhow::Result<ExitCode> {
    let p = &config.producer;
    let interval = args.interval.map(|secs| Duration::from_secs(if secs == 0 { p.interval_secs } else { secs }));
    if args.count.is_none() && interval.is_none() {
        anyhow::bail!("give --count N, or --interval [SECS] to fetch a batch every period until stopped");
    }
    let seed = match args.seed.unwrap_or(p.synthetic_seed) {
        0 => rand_seed(),
        s => s,
    };
    let opts = ProduceOptions {
        source: args.source.unwrap_or(p.source),
        count: args.count,
        rate: args.rate.or(Some(p.rate)).filter(|r| *r > 0.0),
        batch: args.batch.unwrap_or(p.batch_size),
        interval,
        seed,
    };
    if interval.is_some() {
        let addr: std::net::SocketAddr = p.metrics_addr.parse().context("producer.metrics_addr")?;
        pipeline_core::telemetry::serve_metrics(addr).context("cannot serve /metrics")?;
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let progress = match (args.quiet, opts.count) {
        (false, Some(n)) if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            let bar = indicatif::ProgressBar::new(n);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} published {per_sec} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(bar)
        }
        _ => None,
    };
    tracing::info!(source = opts.source.name(), count = ?opts.count, batch = opts.batch, seed, "producing");
    let shutdown = pipeline_core::shutdown::on_signals();
    let result = pipeline_producer::run(&config, opts, shutdown, progress.clone()).await;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let summary = result?;
    println!(
        "fetched {} | rejected {} | duplicates {} | audited {} | published {} (+{} recovered from the outbox) | {:.0} records/s in {:.1} s",
        summary.fetched,
        summary.rejected,
        summary.duplicates,
        summary.audited,
        summary.published,
        summary.recovered,
        summary.records_per_sec(),
        summary.elapsed.as_secs_f64()
    );
    Ok(if summary.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish().max(1)
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
            let stopped = cluster.down(&services)?;
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
    println!("{:<21} {:>8} {:<14} {:<8} {:>8}  UI / DETAIL", "SERVICE", "PID", "PORTS", "HEALTHY", "RSS MiB");
    let mut total = 0;
    for r in &rows {
        total += r.rss_mib;
        let ports = r.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let extra = if r.healthy { r.ui.clone().unwrap_or_default() } else { r.detail.clone() };
        println!(
            "{:<21} {:>8} {:<14} {:<8} {:>8}  {}",
            r.service.name(),
            pid,
            ports,
            if r.healthy { "yes" } else { "no" },
            r.rss_mib,
            extra
        );
    }
    println!("{:<21} {:>8} {:<14} {:<8} {:>8}", "total", "", "", "", total);
    if rows.iter().any(|r| r.service == Service::AirflowApi) {
        let passwords = cluster.layout().state.join(pipeline_cluster::services::airflow::PASSWORDS_FILE);
        println!(
            "Airflow UI {}: user {}, password in {}",
            pipeline_cluster::services::airflow::base_url(cluster.config()),
            pipeline_cluster::services::airflow::ADMIN_USER,
            passwords.display()
        );
    }
    rows.iter().all(|r| r.healthy)
}
