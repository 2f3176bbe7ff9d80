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
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file and print the summary (exit 99 if a threshold fails).
    Run(RunArgs),
    /// Check a scenario file and print its resolved plan without sending any load.
    Validate(ValidateArgs),
}

/// Options shared by `run` and `validate`.
#[derive(Debug, Args, Clone)]
pub struct FileArgs {
    /// The scenario file (YAML or JSON).
    pub file: PathBuf,
    /// Sets a variable for `${KEY}` in the file (before the process environment).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Overrides VUs (constant-vus, per-vu/shared-iterations; preAllocatedVUs of arrival-rate).
    #[arg(long)]
    pub vus: Option<u64>,
    /// Overrides the duration of every scenario (k6 syntax: 30s, 5m, 1h).
    #[arg(long, short = 'd')]
    pub duration: Option<String>,
    /// Overrides iterations (per-vu-iterations, shared-iterations).
    #[arg(long, short = 'i')]
    pub iterations: Option<u64>,
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
    /// Where to write the k6-compatible summary JSON
    /// (default: results/<file name>-results.json).
    #[arg(long, value_name = "PATH")]
    pub summary_export: Option<PathBuf>,
    /// Do not write the summary JSON.
    #[arg(long, conflicts_with = "summary_export")]
    pub no_summary_export: bool,
    /// No progress output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// No colors in the summary.
    #[arg(long)]
    pub no_color: bool,
    /// Worker threads of the embedded agent (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}
