//! The command line: every subcommand, its flags and their help (what `pipeline --help` prints).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use pipeline_cluster::Service;
use pipeline_core::config::SourceKind;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Real-time user-data pipeline: RandomUser -> Kafka -> Spark/DataFusion -> Cassandra"
)]
pub(crate) struct Cli {
    /// User config file (TOML) layered over the defaults; env PIPELINE__SECTION__KEY wins over it.
    #[arg(long, global = true, env = "PIPELINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Reconcile the audit store, the Kafka topic and Cassandra; exit 1 on any loss or on
    /// audited users refused by an engine (dead-lettered).
    Verify {
        /// Print the report as one JSON document (stable fields, see `pipeline_jobs::verify::json`).
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter topic: counts by reason, and replay once the cause is fixed.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// The live dashboard on cluster.host:dashboard.port (127.0.0.1:9021): page, /api/... JSON, /metrics.
    Dashboard,
    /// The number of rows in the Cassandra table and a few of them.
    Sample {
        /// Rows to show.
        #[arg(long, default_value_t = 5)]
        limit: usize,
    },
    /// The supervisor (started by `cluster up`): restarts services that die and keeps the Spark
    /// job in the state the user asked for. Serves its metrics on cluster.supervisor.metrics_addr.
    Supervise,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
pub(crate) enum ClusterAction {
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
pub(crate) enum JobsAction {
    /// Each query: state, latest batch (rows/s, batch time, offsets against the topic's end),
    /// or the exception that terminated it. Exit code: 0 running, 3 degraded or failed,
    /// 4 not submitted or stopped.
    Status {
        /// Print the status as JSON (`pipeline_jobs::spark::JobStatus`, documented in
        /// docs/ARCHITECTURE.md) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop the job's queries gracefully (a later submit resumes from the checkpoint).
    Stop,
}

#[derive(Subcommand)]
pub(crate) enum DlqAction {
    /// Dead letters by reason and engine: counts, audited and replayed ones, samples.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead letters to kafka.topic (original key, bytes and headers, plus a
    /// `dlq_replay` header); each dead letter is replayed at most once (ledger in
    /// audit.dlq_replays).
    Replay {
        /// Only dead letters whose reason contains this text.
        #[arg(long)]
        reason: Option<String>,
        /// Only dead letters written since: RFC 3339 time, UTC date, or an age (30m, 2h, 7d).
        #[arg(long, value_parser = parse_since)]
        since: Option<pipeline_jobs::dlq::Time>,
        /// Also replay dead letters of input that was never audited (foreign or malformed).
        #[arg(long)]
        include_unaudited: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--since`, parsed by the jobs library (the binary needs no time crate of its own).
pub(crate) fn parse_since(s: &str) -> Result<pipeline_jobs::dlq::Time, String> {
    pipeline_jobs::dlq::parse_since(s, pipeline_jobs::dlq::now())
}

#[derive(clap::Args)]
pub(crate) struct ProduceArgs {
    /// Where users come from (default: producer.source in the config).
    #[arg(long, value_parser = parse_source)]
    pub source: Option<SourceKind>,
    /// Number of users to fetch. Required unless --interval is given.
    #[arg(long)]
    pub count: Option<u64>,
    /// Upper bound on records per second (default: producer.rate; 0 = unlimited).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Users per fetch and per audit/publish batch (default: producer.batch_size).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Interval mode: fetch one batch every SECS seconds until stopped (or until --count);
    /// serves Prometheus metrics on producer.metrics_addr meanwhile.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "0")]
    pub interval: Option<u64>,
    /// Seed of the synthetic source (default: producer.synthetic_seed; 0 = random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub(crate) fn parse_source(s: &str) -> Result<SourceKind, String> {
    match s {
        "randomuser" => Ok(SourceKind::RandomUser),
        "synthetic" => Ok(SourceKind::Synthetic),
        other => Err(format!("`{other}` is not a source: use randomuser or synthetic")),
    }
}

#[derive(Subcommand)]
pub(crate) enum ConfigAction {
    /// Load every layer and print all errors at once; exit 1 on any.
    Check,
    /// Print the effective configuration (secrets omitted).
    Show,
}
