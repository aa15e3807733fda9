//! `pipeline`: one binary whose subcommands map to the stages of the pipeline.
//!
//! | subcommand        | crate                | what it does                                     |
//! |-------------------|----------------------|--------------------------------------------------|
//! | `cluster ...`     | `pipeline-cluster`   | Kafka, registry, PostgreSQL, Cassandra, Spark    |
//! | `produce`         | `pipeline-producer`  | users -> PostgreSQL audit outbox -> Kafka        |
//! | `submit`, `jobs`  | `pipeline-jobs`      | the Spark streaming job through Spark Connect    |
//! | `local`           | `pipeline-jobs`      | the same transform on DataFusion, no Spark       |
//! | `verify`          | `pipeline-jobs`      | audit ids vs Kafka vs Cassandra, diffs reported  |
//! | `dlq list/replay` | `pipeline-jobs`      | dead letters by reason; replay once fixed        |
//! | `dashboard`       | `pipeline-dashboard` | the live page on 127.0.0.1:9021, /api, /metrics  |
//! | `config check`    | `pipeline-core`      | loads every config layer, prints every error     |

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use pipeline_cluster::{Cluster, Outcome, Service};
use pipeline_core::Config;
use pipeline_jobs::spark;
use pipeline_producer::ProduceOptions;
use std::time::Duration;

mod cli;

use cli::{Cli, ClusterAction, Command, ConfigAction, DlqAction, JobsAction, ProduceArgs};

/// mimalloc: the producer's JSON handling and the engines' batches are allocation-heavy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Supervise => supervise(config).await,
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
        Command::Dashboard => {
            println!("dashboard on http://{}", pipeline_dashboard::address(&config)?);
            pipeline_dashboard::run(config, pipeline_core::shutdown::on_signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { json } => {
            let report = pipeline_jobs::verify::verify(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json()).context("cannot render the report")?);
            } else {
                println!("{report}");
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Dlq { action: DlqAction::List { json } } => {
            let listing = pipeline_jobs::dlq::list(&config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&listing).context("cannot render the listing")?);
            } else {
                print!("{listing}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq { action: DlqAction::Replay { reason, since, include_unaudited, json } } => {
            let opts = pipeline_jobs::dlq::ReplayOptions { reason, since, include_unaudited };
            let summary = pipeline_jobs::dlq::replay(&config, &opts).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary).context("cannot render the summary")?);
            } else {
                println!("{summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Local { until_idle, max_records } => {
            let addr = config.local.metrics_addr;
            pipeline_core::telemetry::serve_metrics(addr).context("cannot serve /metrics")?;
            let opts = pipeline_jobs::local::LocalOptions { until_idle, max_records };
            let summary = pipeline_jobs::local::run(&config, opts, pipeline_core::shutdown::on_signals()).await?;
            println!(
                "consumed {} | written {} | dead-lettered {} | {} batch(es)",
                summary.consumed, summary.written, summary.dead_lettered, summary.batches
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { action: JobsAction::Status { json } } => {
            let status = spark::status(&config).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&status).context("cannot render the status")?);
            } else {
                print!("{status}");
                if status.state == spark::JobState::NotSubmitted {
                    println!("not submitted (start it with `pipeline submit`)");
                }
            }
            Ok(ExitCode::from(status.exit_code))
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

fn print_query(q: &spark::QueryStatus) {
    let state = if q.state == spark::QueryState::Running { "RUNNING" } else { "NOT RUNNING" };
    println!("{state} {} id={} run={}", q.name, q.id.as_deref().unwrap_or("-"), q.run_id.as_deref().unwrap_or("-"));
    match &q.last_batch {
        Some(b) => println!("  last batch: {}", spark::progress_line(b)),
        None => println!("  no batch completed yet"),
    }
}

async fn submit(follow: bool, config: Config) -> anyhow::Result<ExitCode> {
    let submitted = spark::submit(&config).await?;
    if submitted.already_running {
        println!("the job is already running; nothing started");
    } else {
        println!(
            "submitted, decoding schema ids {:?} of {} (newest {})",
            submitted.schema_ids, config.registry.subject, submitted.schema_id
        );
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
    let mut last_state = None;
    while !shutdown.is_cancelled() {
        let status = spark::status(&config).await;
        if last_state != Some(status.state) {
            last_state = Some(status.state);
            if status.state != spark::JobState::Running {
                // Degraded, failed, stopped elsewhere: say so once, with the reasons.
                print!("{status}");
            }
        }
        if let Some(b) =
            status.queries.iter().find(|q| q.name == config.job.query_name).and_then(|q| q.last_batch.as_ref())
        {
            if b.batch_id > last_batch {
                last_batch = b.batch_id;
                println!("{}", spark::progress_line(b));
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
        let addr = p.metrics_addr;
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

/// `pipeline supervise`: the service watchdog and the Spark job's supervisor, until a signal.
async fn supervise(config: Config) -> anyhow::Result<ExitCode> {
    let addr = config.cluster.supervisor.metrics_addr;
    pipeline_core::telemetry::serve_metrics(addr).context("cannot serve the supervisor's /metrics")?;
    tracing::info!("supervisor metrics on http://{addr}/metrics");
    let shutdown = pipeline_core::shutdown::on_signals();
    let check = Duration::from_millis(config.cluster.supervisor.check_interval_ms);
    let cluster = Cluster::new(config.clone());
    tokio::join!(
        pipeline_cluster::supervise::watch(&cluster, shutdown.clone()),
        spark::supervisor::run(&config, check, shutdown),
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the status table; true when every service is healthy.
async fn print_status(cluster: &Cluster) -> bool {
    let rows = cluster.status().await;
    println!(
        "{:<21} {:>8} {:<14} {:<8} {:>8} {:>8}  UI / DETAIL",
        "SERVICE", "PID", "PORTS", "HEALTHY", "RSS MiB", "RESTARTS"
    );
    let mut total = 0;
    for r in &rows {
        total += r.rss_mib;
        let ports = r.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let pid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let extra = if r.healthy { r.ui.clone().unwrap_or_default() } else { r.detail.clone() };
        println!(
            "{:<21} {:>8} {:<14} {:<8} {:>8} {:>8}  {}",
            r.service.name(),
            pid,
            ports,
            if r.healthy { "yes" } else { "no" },
            r.rss_mib,
            r.restarts,
            extra
        );
        if let Some(exit) = &r.last_exit {
            println!("{:<21} last exit: {exit}", "");
        }
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
