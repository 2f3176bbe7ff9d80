//! `barrage run`'s command line turned into settings once (as ripgrep turns low-level
//! arguments into high-level ones): defaults resolved, files read, combinations
//! checked. After this nothing reads clap's structs.

use std::path::{Path, PathBuf};

use barrage_common::metrics::Tags;

use crate::agents::{AgentAddr, ConnectOptions};
use crate::cli::{FileArgs, OnAgentLoss, RunArgs};
use crate::output::{OutputSpec, parse_tags};

/// Everything `barrage run` needs besides the test itself.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The scenario file and its overrides (read by [`crate::load::load`]).
    pub file: FileArgs,
    /// Where the results JSON (handleSummary's data) goes; `None` = not written.
    pub results: Option<PathBuf>,
    /// Where k6's `--summary-export` JSON goes, if asked for.
    pub summary_export: Option<PathBuf>,
    /// Print no end-of-test summary.
    pub no_summary: bool,
    /// Keep serving live metrics after the end until Ctrl-C.
    pub linger: bool,
    /// No progress output.
    pub quiet: bool,
    /// Colours in the summary, if stdout is a terminal.
    pub color: bool,
    /// Worker threads per agent; 0 = the agent's default (one per core).
    pub workers: usize,
    /// Remote agents given one by one.
    pub agents: Vec<AgentAddr>,
    /// Names whose every address is an agent.
    pub agents_dns: Vec<String>,
    /// How to reach remote agents (token and certificates read).
    pub connect: ConnectOptions,
    /// What to do when an agent is lost.
    pub on_agent_loss: OnAgentLoss,
    /// Folder to write every received batch into.
    pub dump_batches: Option<PathBuf>,
    /// Where to serve live Prometheus metrics.
    pub metrics_listen: Option<String>,
    /// `--out`s (or `K6_OUT`'s), in order.
    pub outputs: Vec<OutputSpec>,
    /// `--tag`s, added to every series the outputs send.
    pub tags: Tags,
    /// Where to serve the live dashboard.
    pub dashboard: Option<String>,
    /// Where to write the HTML report.
    pub report: Option<PathBuf>,
}

impl RunSettings {
    /// Resolves defaults and reads the token and certificate files.
    ///
    /// Fails with a message naming the flag when a file cannot be read or flags that go
    /// together are given alone.
    pub fn from_args(args: RunArgs) -> Result<RunSettings, String> {
        let results = if args.no_results {
            None
        } else {
            Some(
                args.results
                    .clone()
                    .unwrap_or_else(|| default_export(&args.file.file)),
            )
        };
        let connect = ConnectOptions {
            token: read_token(&args.token_file)?,
            ca_pem: read_opt(&args.tls_ca, "--tls-ca")?,
            identity: match (
                read_opt(&args.tls_cert, "--tls-cert")?,
                read_opt(&args.tls_key, "--tls-key")?,
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err("--tls-cert and --tls-key go together".into()),
            },
            domain: args.tls_domain.clone(),
        };
        let out = if args.out.is_empty() {
            // As k6: K6_OUT only when no --out is given.
            std::env::var("K6_OUT")
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            args.out.clone()
        };
        let outputs = out
            .iter()
            .filter(|o| !o.trim().is_empty())
            .map(|o| o.parse::<OutputSpec>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RunSettings {
            outputs,
            tags: parse_tags(&args.file.tags)?,
            file: args.file,
            results,
            summary_export: args.summary_export,
            no_summary: args.no_summary,
            linger: args.linger,
            quiet: args.quiet,
            color: !args.no_color,
            workers: args.workers.unwrap_or(0),
            agents: with_agents_files(args.agents, &args.agents_files)?,
            agents_dns: args.agents_dns,
            connect,
            on_agent_loss: args.on_agent_loss,
            dump_batches: args.dump_batches,
            metrics_listen: args.metrics_listen,
            dashboard: dashboard_addr(args.dashboard),
            report: args.report,
        })
    }
}

/// `agents` followed by those of each `--agents-file`, in order.
///
/// Fails if a file cannot be read, or on its first line that is not
/// `HOST:PORT[@WEIGHT]`, naming the file and line.
pub fn with_agents_files(
    mut agents: Vec<AgentAddr>,
    files: &[PathBuf],
) -> Result<Vec<AgentAddr>, String> {
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--agents-file {}: {e}", path.display()))?;
        agents.extend(parse_agents_file(path, &text)?);
    }
    Ok(agents)
}

/// The agents listed in `text` (the contents of `path`): one `HOST:PORT[@WEIGHT]` a
/// line, surrounding blanks ignored, blank lines and `#` comments skipped.
///
/// Fails on the first line that does not parse, naming `path` and the line number.
pub fn parse_agents_file(path: &Path, text: &str) -> Result<Vec<AgentAddr>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let agent = line.parse::<AgentAddr>().map_err(|e| {
            let e = e.strip_prefix("--agent ").unwrap_or(&e);
            format!("{}:{}: {e}", path.display(), n + 1)
        })?;
        out.push(agent);
    }
    if out.is_empty() {
        return Err(format!("{}: lists no agent", path.display()));
    }
    Ok(out)
}

/// `--dashboard`'s address; `BARRAGE_DASHBOARD` may also say `true` (the default
/// address) or `false`, `0` or nothing (off), as k6's `K6_WEB_DASHBOARD` does.
fn dashboard_addr(given: Option<String>) -> Option<String> {
    let given = given?;
    match given.trim() {
        "" | "false" | "0" => None,
        "true" | "1" => Some(crate::dashboard::DEFAULT_ADDR.to_string()),
        addr => Some(addr.to_string()),
    }
}

/// `results/<file stem>-results.json`.
fn default_export(file: &Path) -> PathBuf {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "barrage".into());
    PathBuf::from("results").join(format!("{stem}-results.json"))
}

fn read_opt(path: &Option<PathBuf>, what: &str) -> Result<Option<Vec<u8>>, String> {
    match path {
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| format!("{what} {}: {e}", p.display())),
        None => Ok(None),
    }
}

/// The shared token from `--token-file` or `BARRAGE_TOKEN`.
///
/// Fails if the file cannot be read or is empty.
pub fn read_token(file: &Option<PathBuf>) -> Result<Option<String>, String> {
    if let Some(p) = file {
        let t =
            std::fs::read_to_string(p).map_err(|e| format!("--token-file {}: {e}", p.display()))?;
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(format!("--token-file {}: the file is empty", p.display()));
        }
        return Ok(Some(t));
    }
    Ok(std::env::var("BARRAGE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_file_lists_agents_and_names_the_line_that_is_wrong() {
        let path = Path::new("agents.txt");
        let agents =
            parse_agents_file(path, "# the fleet\n10.0.0.1:7070\n\n  10.0.0.2:7070@2 \n").unwrap();
        let got: Vec<(&str, f64)> = agents.iter().map(|a| (a.addr.as_str(), a.weight)).collect();
        assert_eq!(got, [("10.0.0.1:7070", 1.0), ("10.0.0.2:7070", 2.0)]);
        let e = parse_agents_file(path, "10.0.0.1:7070\nvm2\n").unwrap_err();
        assert!(
            e.starts_with("agents.txt:2: vm2: expected HOST:PORT"),
            "{e}"
        );
        let e = parse_agents_file(path, "vm1:7070@-1\n").unwrap_err();
        assert!(e.contains("agents.txt:1:") && e.contains("positive"), "{e}");
        let e = parse_agents_file(path, "# nobody\n").unwrap_err();
        assert_eq!(e, "agents.txt: lists no agent");
    }
}
