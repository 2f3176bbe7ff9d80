//! The `barrage` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Barrage: distributed load testing with k6's scenarios and thresholds.
#[derive(Debug, Parser)]
#[command(name = "barrage", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Where log lines go: stderr, stdout, none, or file=PATH (k6's --log-output).
    #[arg(long, global = true, value_name = "OUTPUT", default_value = "stderr")]
    pub log_output: String,
    /// Log lines as text or as one JSON object a line (k6's --log-format).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `run`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a scenario file and print the summary (exit 99 if a threshold fails).
    Run(Box<RunArgs>),
    /// Check a scenario file and print its resolved plan without sending any load.
    Validate(ValidateArgs),
    /// Serve as an agent: run shares of tests for coordinators that hold the token.
    Agent(AgentArgs),
    /// Print the test's resolved options as JSON, in k6's `inspect` shape.
    Inspect(InspectArgs),
    /// Print the version.
    Version,
    /// Write a starter test that runs (YAML, or a k6 script for a `.js` name).
    New(NewArgs),
    /// Pack a test and every file it needs into one tar, runnable by `barrage run FILE.tar`.
    Archive(ArchiveArgs),
}

/// `barrage inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The test file and overrides.
    #[command(flatten)]
    pub file: FileArgs,
}

/// `barrage new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The file to write (`.yaml`, `.yml` or `.js`).
    #[arg(default_value = "script.yaml")]
    pub file: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long, short = 'f')]
    pub force: bool,
}

/// `barrage archive`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The test file and overrides (the overrides are not kept: give them to `run`).
    #[command(flatten)]
    pub file: FileArgs,
    /// Where to write the archive.
    #[arg(long = "archive-out", short = 'O', default_value = "archive.tar")]
    pub out: PathBuf,
}

/// What to do when an agent is lost mid-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OnAgentLoss {
    /// Hand its share to the surviving agents from a new instant on.
    #[default]
    Rebalance,
    /// Stop the run (exit 103), keeping what was measured.
    Abort,
}

/// `barrage agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070", env = "BARRAGE_AGENT_LISTEN")]
    pub listen: String,
    /// File holding the shared token (default: the BARRAGE_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Accept coordinators without a token on a non-loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// TLS certificate (PEM) of this agent.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of this agent.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that coordinators' client certificates must chain to (mTLS).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Only send load to HOST or HOST:PORT (repeatable); plans aimed elsewhere are refused.
    #[arg(long = "allow-target", value_name = "HOST[:PORT]")]
    pub allow_target: Vec<String>,
    /// Name reported to coordinators (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Options shared by `run` and `validate`.
#[derive(Debug, Default, Args, Clone)]
pub struct FileArgs {
    /// The scenario file (YAML or JSON).
    pub file: PathBuf,
    /// Sets a variable for `${KEY}` in the file (before the process environment).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// VUs of the test (k6's -u): with --duration, --iterations or --stage when the file
    /// has scenarios (which those replace, as in k6).
    #[arg(long, short = 'u')]
    pub vus: Option<u64>,
    /// Test duration (k6 syntax: 30s, 5m, 1h); replaces the file's scenarios by one
    /// constant-vus scenario, as k6 does.
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Iterations shared by the VUs; replaces the file's scenarios by one
    /// shared-iterations scenario, as k6 does.
    #[arg(long, short = 'i')]
    pub iterations: Option<u64>,
    /// A ramping stage DURATION:TARGET (repeatable); replaces the file's scenarios by one
    /// ramping-vus scenario, as k6 does.
    #[arg(long = "stage", short = 's', value_name = "DURATION:TARGET")]
    pub stages: Vec<String>,
    /// A tag on every sample, NAME=VALUE (repeatable); the outputs send it too, e.g.
    /// the `testid` k6's Grafana dashboards select by.
    #[arg(long = "tag", value_name = "NAME=VALUE")]
    pub tags: Vec<String>,
    /// The User-Agent of HTTP requests.
    #[arg(long, value_name = "STRING")]
    pub user_agent: Option<String>,
    /// Do not verify TLS certificates of targets.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Neither evaluate nor show the thresholds.
    #[arg(long)]
    pub no_thresholds: bool,
    /// The trend statistics of the summary, comma-separated (avg,min,med,max,p(90),...).
    #[arg(long, value_name = "STATS")]
    pub summary_trend_stats: Option<String>,
}

/// `barrage validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The scenario file and overrides.
    #[command(flatten)]
    pub file: FileArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `barrage run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file and overrides.
    #[command(flatten)]
    pub file: FileArgs,
    /// Also write k6's own `--summary-export` JSON here (flat metric values, groups and
    /// checks keyed by name).
    #[arg(long, value_name = "PATH")]
    pub summary_export: Option<PathBuf>,
    /// Where to write the results JSON, in k6's handleSummary data shape
    /// (default: `results/<file name>-results.json`).
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,
    /// Do not write the results JSON.
    #[arg(long, alias = "no-summary-export", conflicts_with = "results")]
    pub no_results: bool,
    /// Do not print the end-of-test summary.
    #[arg(long)]
    pub no_summary: bool,
    /// Keep serving the live metrics (and dashboard) after the test until Ctrl-C.
    #[arg(long, short = 'l')]
    pub linger: bool,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// No colors in the summary.
    #[arg(long)]
    pub no_color: bool,
    /// Worker threads per agent (default: one per core of each agent).
    #[arg(long)]
    pub workers: Option<usize>,
    /// A remote agent, HOST:PORT with an optional @WEIGHT (repeatable).
    /// Without agents the test runs on the embedded agent.
    #[arg(long = "agent", value_name = "HOST:PORT[@WEIGHT]")]
    pub agents: Vec<crate::agents::AgentAddr>,
    /// Every address NAME resolves to is an agent (a Kubernetes headless Service).
    #[arg(long = "agents-dns", value_name = "NAME:PORT")]
    pub agents_dns: Vec<String>,
    /// A file of agents, one HOST:PORT[@WEIGHT] a line (blank lines and lines starting
    /// with # are skipped); added after the --agent ones (repeatable).
    #[arg(long = "agents-file", value_name = "PATH")]
    pub agents_files: Vec<PathBuf>,
    /// File holding the shared token (default: the BARRAGE_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// CA (PEM) to verify agents' certificates; turns TLS on.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS.
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Server name to verify in agents' certificates.
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// What to do when an agent is lost.
    #[arg(long, value_enum, default_value_t = OnAgentLoss::Rebalance)]
    pub on_agent_loss: OnAgentLoss,
    /// Write every metric batch received (protobuf) into this folder, for offline checks.
    #[arg(long, value_name = "DIR", hide = true)]
    pub dump_batches: Option<PathBuf>,
    /// Serve live Prometheus metrics of the run on http://ADDR/metrics (e.g. 0.0.0.0:9090).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Send the merged metrics to an output, as k6's `--out` (repeatable; default from
    /// K6_OUT, comma-separated): json=FILE, csv=FILE, experimental-prometheus-rw,
    /// opentelemetry (options from k6's K6_PROMETHEUS_RW_* and K6_OTEL_* variables).
    #[arg(long = "out", short = 'o', value_name = "NAME[=ARG]")]
    pub out: Vec<String>,
    /// Serve a live dashboard of the run on http://ADDR/ (default 127.0.0.1:5665; only
    /// an explicit address leaves loopback).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, env = "BARRAGE_DASHBOARD",
          default_missing_value = crate::dashboard::DEFAULT_ADDR)]
    pub dashboard: Option<String>,
    /// At the end, write the dashboard's charts over the whole run and the summary's
    /// tables into one self-contained HTML file (opens offline).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}
