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
    /// Serve as one agent in front of several: split each share over them, merge
    /// their batches into one a second, hand a lost one's share to the others.
    Relay(RelayArgs),
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

/// `barrage relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (for the coordinator).
    #[arg(long, default_value = "127.0.0.1:7070", env = "BARRAGE_RELAY_LISTEN")]
    pub listen: String,
    /// An agent behind the relay, HOST:PORT with an optional @WEIGHT (repeatable).
    #[arg(long = "agent", value_name = "HOST:PORT[@WEIGHT]")]
    pub agents: Vec<crate::agents::AgentAddr>,
    /// Every address NAME resolves to is an agent behind the relay, resolved again
    /// for every run (a Kubernetes headless Service).
    #[arg(long = "agents-dns", value_name = "NAME:PORT")]
    pub agents_dns: Vec<String>,
    /// A file of agents behind the relay, one HOST:PORT[@WEIGHT] a line (blank lines
    /// and lines starting with # are skipped, as in `run --agents-file`); added after
    /// the --agent ones (repeatable). Read once, at start.
    #[arg(long = "agents-file", value_name = "PATH")]
    pub agents_files: Vec<PathBuf>,
    /// File holding the shared token, for the coordinator's calls and the relay's own
    /// to its agents (default: the BARRAGE_TOKEN environment variable).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Accept coordinators without a token on a non-loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// TLS certificate (PEM) of this relay.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of this relay.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that coordinators' client certificates must chain to (mTLS).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// CA (PEM) to verify the agents' certificates; turns TLS on towards them.
    #[arg(long, value_name = "PATH")]
    pub agent_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS towards the agents.
    #[arg(long, value_name = "PATH", requires = "agent_tls_key")]
    pub agent_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS towards the agents.
    #[arg(long, value_name = "PATH", requires = "agent_tls_cert")]
    pub agent_tls_key: Option<PathBuf>,
    /// Server name to verify in the agents' certificates.
    #[arg(long)]
    pub agent_tls_domain: Option<String>,
    /// Name reported to coordinators (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Write every metric batch received from the agents (protobuf) into this folder.
    #[arg(long, value_name = "DIR", hide = true)]
    pub dump_batches: Option<PathBuf>,
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
    /// The one unit of times in the summary text: s, ms or us (k6's; the JSON keeps ms).
    #[arg(long, value_name = "UNIT", env = "K6_SUMMARY_TIME_UNIT")]
    pub summary_time_unit: Option<String>,
    /// Log every HTTP request and response (headers; `=full` adds bodies, cut after
    /// 64 KiB) to the log, as k6's --http-debug. The value attaches only with `=`.
    #[arg(long, value_name = "full", num_args = 0..=1, require_equals = true,
          default_missing_value = "headers")]
    pub http_debug: Option<String>,
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
    /// Accepted for k6's habit and ignored: Barrage sends no usage report.
    #[arg(long)]
    pub no_usage_report: bool,
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
    /// an explicit address leaves loopback). The address attaches only with `=`
    /// (`--dashboard=0.0.0.0:5665`), so `--dashboard test.yaml` keeps the file.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true,
          env = "BARRAGE_DASHBOARD", default_missing_value = crate::dashboard::DEFAULT_ADDR)]
    pub dashboard: Option<String>,
    /// At the end, write the dashboard's charts over the whole run and the summary's
    /// tables into one self-contained HTML file (opens offline).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every flag `k6 run --help` lists in k6 1.1 (long names).
    const K6_RUN_FLAGS: &[&str] = &[
        "vus",
        "duration",
        "iterations",
        "stage",
        "execution-segment",
        "execution-segment-sequence",
        "paused",
        "no-setup",
        "no-teardown",
        "max-redirects",
        "batch",
        "batch-per-host",
        "rps",
        "user-agent",
        "http-debug",
        "insecure-skip-tls-verify",
        "no-connection-reuse",
        "no-vu-connection-reuse",
        "min-iteration-duration",
        "throw",
        "blacklist-ip",
        "block-hostnames",
        "summary-trend-stats",
        "summary-time-unit",
        "system-tags",
        "tag",
        "console-output",
        "discard-response-bodies",
        "local-ips",
        "dns",
        "include-system-env-vars",
        "compatibility-mode",
        "type",
        "env",
        "no-thresholds",
        "no-summary",
        "summary-mode",
        "summary-export",
        "traces-output",
        "out",
        "linger",
        "no-usage-report",
        "help",
        "address",
        "config",
        "log-format",
        "log-output",
        "no-color",
        "profiling-enabled",
        "quiet",
        "secret-source",
        "verbose",
    ];

    /// The flags of a table cell: every `-x` or `--name` inside backticks, without
    /// values (`-s/--stage D:T` gives `-s` and `--stage`, `--http-debug[=full]` gives
    /// `--http-debug`).
    fn flags_in(cell: &str) -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .flat_map(|code| {
                code.split(|c: char| c.is_whitespace() || c == '/')
                    .filter(|w| w.starts_with('-'))
                    .map(|w| w.split(['[', '=']).next().unwrap_or(w).to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_readme_flag_table_matches_the_cli() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let start = readme.find("| `k6 run` flag |").unwrap();
        let table: Vec<&str> = readme[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let mut cli = Cli::command();
        cli.build();
        let run = cli.find_subcommand("run").unwrap();
        let known = |flag: &str| {
            run.get_arguments().any(|a| match flag.strip_prefix("--") {
                Some(long) => a.get_long() == Some(long),
                None => flag
                    .strip_prefix('-')
                    .and_then(|s| s.chars().next())
                    .is_some_and(|c| a.get_short() == Some(c)),
            })
        };
        let mut listed = Vec::new();
        for row in &table {
            let cells: Vec<&str> = row.split(" | ").collect();
            let flags = flags_in(cells[0]);
            assert!(!flags.is_empty(), "a row without a flag: {row}");
            let same = match cells[1].trim() {
                "same" => true,
                "no" => false,
                other => panic!("Barrage column must be `same` or `no`, not {other:?}: {row}"),
            };
            for f in flags {
                assert_eq!(
                    known(&f),
                    same,
                    "README says {f} is {}, but `barrage run` {} it",
                    if same { "accepted" } else { "not accepted" },
                    if same { "does not know" } else { "knows" }
                );
                listed.push(f);
            }
        }
        for k6 in K6_RUN_FLAGS {
            assert!(
                listed.iter().any(|f| f.trim_start_matches('-') == *k6),
                "k6's --{k6} has no row in the README's table"
            );
        }
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Command::Run(r) => *r,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn an_optional_value_attaches_only_with_equals() {
        // `--dashboard test.yaml`: the file stays the file, the dashboard its default.
        let r = run_args(&["barrage", "run", "--dashboard", "test.yaml"]);
        assert_eq!(r.file.file, PathBuf::from("test.yaml"));
        assert_eq!(r.dashboard.as_deref(), Some(crate::dashboard::DEFAULT_ADDR));
        let r = run_args(&["barrage", "run", "--dashboard=0.0.0.0:6000", "test.yaml"]);
        assert_eq!(r.dashboard.as_deref(), Some("0.0.0.0:6000"));
        assert_eq!(r.file.file, PathBuf::from("test.yaml"));

        let r = run_args(&["barrage", "run", "--http-debug", "test.yaml"]);
        assert_eq!(r.file.file, PathBuf::from("test.yaml"));
        assert_eq!(r.file.http_debug.as_deref(), Some("headers"));
        let r = run_args(&["barrage", "run", "--http-debug=full", "t.js"]);
        assert_eq!(r.file.http_debug.as_deref(), Some("full"));
        assert_eq!(r.file.file, PathBuf::from("t.js"));
        let r = run_args(&["barrage", "run", "t.js"]);
        assert_eq!(r.file.http_debug, None);

        // `--linger` takes no value at all.
        let r = run_args(&["barrage", "run", "--linger", "test.yaml"]);
        assert!(r.linger);
        assert_eq!(r.file.file, PathBuf::from("test.yaml"));
    }
}
