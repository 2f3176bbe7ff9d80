//! Reading and checking a scenario file: everything that can refuse a test happens
//! here, before any load is sent.

use std::collections::HashMap;
use std::sync::Arc;

use barrage_agent::engine::check_flows;
use barrage_agent::grpc::ProtoSet;
use barrage_common::duration::{format_duration, parse_duration};
use barrage_common::scenario::{Overrides, TestPlan, load_str};
use barrage_common::schedule::{ScenarioPlan, plan};

use crate::cli::{FileArgs, ValidateArgs};
use crate::exit;

/// A test ready to run.
pub struct Loaded {
    /// The validated test.
    pub test: Arc<TestPlan>,
    /// Its compiled .proto files.
    pub protos: Option<ProtoSet>,
}

/// Why a test was refused; every message names the file and the place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The path given.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command-line value is wrong.
    #[error("{0}")]
    Args(String),
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] Box<barrage_common::scenario::ScenarioError>),
    /// The .proto files did not compile.
    #[error("{file}: protos: {source}")]
    Protos {
        /// The scenario file.
        file: String,
        /// The compiler's message.
        #[source]
        source: barrage_agent::grpc::GrpcError,
    },
    /// A k6 script did not compile or its init code threw.
    #[error(transparent)]
    Script(#[from] barrage_agent::js::JsError),
    /// A flow did not compile.
    #[error("{place}: {source}")]
    Flow {
        /// The scenario file, with the line and column of the step's field where found.
        place: String,
        /// Which step and why.
        #[source]
        source: Box<barrage_agent::flow::FlowError>,
    },
}

impl LoadError {
    /// k6's exit code for this refusal: 107 for a script that did not compile or threw
    /// in its init code, 104 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadError::Script(barrage_agent::js::JsError::Script(_)) => exit::SCRIPT_EXCEPTION,
            _ => exit::INVALID_CONFIG,
        }
    }
}

/// Whether `path` is a k6 script (`.js`, `.mjs`) rather than a YAML scenario.
pub fn is_script(path: &std::path::Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("js" | "mjs")
    )
}

/// Parses `-e KEY=VALUE` pairs.
///
/// Fails on an entry without `=` or with an empty key.
pub fn env_pairs(pairs: &[String]) -> Result<HashMap<String, String>, LoadError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(LoadError::Args(format!("-e {p:?}: expected KEY=VALUE"))),
        })
        .collect()
}

/// The command line's options for the test, each checked.
///
/// Fails on a `--stage` that is not DURATION:TARGET or a `--tag` without `=`.
fn overrides(
    args: &FileArgs,
    duration: Option<std::time::Duration>,
) -> Result<Overrides, LoadError> {
    let stages = if args.stages.is_empty() {
        None
    } else {
        let mut list = Vec::new();
        for s in &args.stages {
            let parsed = s
                .split_once(':')
                .and_then(|(d, t)| Some((parse_duration(d).ok()?, t.trim().parse::<u64>().ok()?)));
            match parsed {
                Some(stage) => list.push(stage),
                None => {
                    return Err(LoadError::Args(format!(
                        "--stage {s:?}: expected DURATION:TARGET, e.g. 30s:10"
                    )));
                }
            }
        }
        Some(list)
    };
    let mut tags = Vec::new();
    for t in &args.tags {
        match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => tags.push((k.to_string(), v.to_string())),
            _ => return Err(LoadError::Args(format!("--tag {t:?}: expected NAME=VALUE"))),
        }
    }
    let summary_time_unit = match args.summary_time_unit.as_deref() {
        None | Some("") => None,
        Some(u) => Some(
            u.parse()
                .map_err(|e| LoadError::Args(format!("--summary-time-unit: {e}")))?,
        ),
    };
    let http_debug = match args.http_debug.as_deref() {
        None => None,
        Some(d) => Some(
            d.parse()
                .map_err(|e| LoadError::Args(format!("--http-debug={e}")))?,
        ),
    };
    Ok(Overrides {
        http_debug,
        summary_time_unit,
        vus: args.vus,
        duration,
        iterations: args.iterations,
        stages,
        tags,
        user_agent: args.user_agent.clone(),
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
        no_thresholds: args.no_thresholds,
        summary_trend_stats: args
            .summary_trend_stats
            .as_ref()
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
    })
}

/// Reads, validates and compiles a scenario file with the command line's overrides.
///
/// Fails on anything that would make the test wrong: the first problem, with its place.
pub fn load(args: &FileArgs) -> Result<Loaded, LoadError> {
    if crate::archive::is_archive(&args.file) {
        return crate::archive::load_archive(args);
    }
    let env = env_pairs(&args.env)?;
    let duration = match &args.duration {
        Some(d) => {
            Some(parse_duration(d).map_err(|e| LoadError::Args(format!("--duration: {e}")))?)
        }
        None => None,
    };
    let overrides = overrides(args, duration)?;
    if is_script(&args.file) {
        return load_script(args, &env, &overrides);
    }
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|source| LoadError::Read {
        file: file.clone(),
        source,
    })?;
    let mut test = load_str(
        &args.file,
        &text,
        |k| env.get(k).cloned().or_else(|| std::env::var(k).ok()),
        &overrides,
    )
    .map_err(Box::new)?;
    for w in &test.warnings {
        eprintln!("warning: {w}");
    }
    let protos = match test.protos() {
        Some(p) => {
            let paths: Vec<_> = p
                .import_paths
                .iter()
                .map(|ip| test.resolve_path(ip))
                .collect();
            let paths = if paths.is_empty() {
                vec![test.resolve_path(std::path::Path::new("."))]
            } else {
                paths
            };
            Some(
                ProtoSet::compile(&paths, &p.files).map_err(|source| LoadError::Protos {
                    file: file.clone(),
                    source,
                })?,
            )
        }
        _ => None,
    };
    inline_data_files(&mut test, &text)?;
    check_flows(&test, protos.as_ref()).map_err(|source| LoadError::Flow {
        place: match barrage_common::scenario::locate(&text, source.at()) {
            Some((line, column)) => format!("{file}:{line}:{column}"),
            None => file,
        },
        source: Box::new(source),
    })?;
    // After the flows compiled: a missing CA file was reported there, with its place.
    inline_ca_files(&mut test)?;
    Ok(Loaded {
        test: Arc::new(test),
        protos,
    })
}

/// Loads a k6 script: its init code runs once here (as k6 does, to read `options`),
/// then its options go through the same validation as a YAML file's.
fn load_script(
    args: &FileArgs,
    env: &HashMap<String, String>,
    overrides: &Overrides,
) -> Result<Loaded, LoadError> {
    let file = args.file.display().to_string();
    if let Err(source) = std::fs::metadata(&args.file) {
        return Err(LoadError::Read { file, source });
    }
    // `-e` values in the order given (the last of a key wins).
    let mut pairs = indexmap::IndexMap::new();
    for p in &args.env {
        if let Some((k, _)) = p.split_once('=')
            && let Some(v) = env.get(k)
        {
            pairs.insert(k.to_string(), v.clone());
        }
    }
    let inspected = barrage_agent::js::inspect(&args.file, &pairs)?;
    let test = barrage_common::scenario::load_script(
        &args.file,
        inspected.options,
        inspected.metrics,
        inspected.source,
        overrides,
    )
    .map_err(Box::new)?;
    for w in &test.warnings {
        eprintln!("warning: {w}");
    }
    Ok(Loaded {
        test: Arc::new(test),
        protos: None,
    })
}

/// Reads every `data:` file into the scenario (`content`), checking that its rows parse:
/// agents get the bytes in the plan and need no files of their own.
///
/// Fails naming the data set's place in the scenario and the file (with its line)
/// when a file cannot be read, does not parse or has no rows.
fn inline_data_files(test: &mut TestPlan, text: &str) -> Result<(), LoadError> {
    let file = test.file.clone();
    let place = |name: &str| {
        let field = format!("data.{name}.file");
        match barrage_common::scenario::locate(text, &field) {
            Some((line, column)) => format!("{}:{line}:{column}: {field}", file.display()),
            None => format!("{}: {field}", file.display()),
        }
    };
    for (name, spec) in test.data_mut() {
        if spec.content.is_some() {
            continue;
        }
        let path = barrage_common::scenario::resolve_against(&file, &spec.file);
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Read {
            file: format!("{} ({})", path.display(), place(name)),
            source,
        })?;
        barrage_common::scenario::data::parse_rows(&path.to_string_lossy(), &bytes)
            .map_err(|e| LoadError::Args(format!("{}: {}: {e}", place(name), path.display())))?;
        spec.content = Some(bytes.into());
    }
    Ok(())
}

/// Reads the CA files of gRPC steps into the scenario (`tls.caPem`): the scenario shipped
/// to agents then carries them, and agents need no files of their own.
fn inline_ca_files(test: &mut TestPlan) -> Result<(), LoadError> {
    let file = test.file.clone();
    for g in test.grpc_steps_mut() {
        let Some(tls) = g.tls.as_mut() else { continue };
        let (None, Some(ca)) = (&tls.ca_pem, &tls.ca) else {
            continue;
        };
        let path = barrage_common::scenario::resolve_against(&file, ca);
        let pem = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
            file: format!("{} (tls.ca of gRPC step {})", path.display(), g.method),
            source,
        })?;
        tls.ca_pem = Some(pem);
    }
    Ok(())
}

/// Prints the resolved plan of each scenario.
pub fn render_plan(test: &TestPlan) -> String {
    let mut out = String::new();
    out.push_str(&format!("file: {}\n", test.file.display()));
    let plans: Vec<ScenarioPlan> = test.scenarios.iter().map(plan).collect();
    let end = plans.iter().map(|p| p.hard_end).max().unwrap_or_default();
    out.push_str(&format!(
        "scenarios: {} (max duration {} incl. graceful stop)\n",
        plans.len(),
        format_duration(end)
    ));
    for p in &plans {
        out.push_str(&format!(
            "\n  {} — {} running flow {:?}\n",
            p.name, p.executor, p.exec
        ));
        out.push_str(&format!(
            "    start {}  end {}  hard end {}\n",
            format_duration(p.start),
            format_duration(p.end),
            format_duration(p.hard_end)
        ));
        match p.expected_iterations {
            Some(n) => out.push_str(&format!("    expected iterations: {n}\n")),
            None => out.push_str("    expected iterations: as many as the VUs complete\n"),
        }
        if let Some(r) = p.peak_rate_per_sec {
            out.push_str(&format!("    peak rate: {r:.2} iterations/s\n"));
        }
        out.push_str(&format!(
            "    VUs: {} initial, {} max\n",
            p.initial_vus, p.max_vus
        ));
    }
    if !test.thresholds.is_empty() {
        out.push_str("\nthresholds:\n");
        for t in &test.thresholds {
            let abort = if t.abort_on_fail {
                " (abortOnFail)"
            } else {
                ""
            };
            out.push_str(&format!("  {}: {}{abort}\n", t.key, t.source));
        }
    }
    out
}

/// `barrage validate`: exit 0 with the plan, or 104 with the error.
pub fn validate_command(args: ValidateArgs) -> i32 {
    match load(&args.file) {
        Ok(l) => {
            if args.json {
                let plans: Vec<ScenarioPlan> = l.test.scenarios.iter().map(plan).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plans).unwrap_or_default()
                );
            } else {
                print!("{}", render_plan(&l.test));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod ca_tests {
    use super::*;

    #[test]
    fn ca_files_travel_inside_the_shipped_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = cert.pem();
        std::fs::write(dir.path().join("ca.pem"), &pem).unwrap();
        let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
        let scenario = format!(
            r#"
options:
  scenarios:
    s: {{executor: shared-iterations, vus: 1, iterations: 1}}
protos: {{importPaths: ["{protos}"], files: [sum.proto]}}
flows:
  f:
    - group:
        name: g
        steps:
          - grpc:
              addr: "https://localhost:1"
              method: sum.SumNumbersService/SumNumbers
              message: {{x: 1, y: 2}}
              tls: {{ca: ca.pem}}
"#
        );
        let file = dir.path().join("t.yaml");
        std::fs::write(&file, scenario).unwrap();
        let loaded = load(&FileArgs {
            file,
            env: Vec::new(),
            vus: None,
            duration: None,
            iterations: None,
            stages: Vec::new(),
            tags: Vec::new(),
            user_agent: None,
            insecure_skip_tls_verify: false,
            no_thresholds: false,
            summary_trend_stats: None,
            summary_time_unit: None,
            http_debug: None,
        })
        .unwrap();
        let mut raw = loaded.test.source().clone();
        let steps = raw.grpc_steps_mut();
        assert_eq!(steps.len(), 1, "the step inside the group is found");
        let tls = steps[0].tls.as_ref().unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(pem.as_str()));
        assert!(
            serde_json::to_string(loaded.test.source())
                .unwrap()
                .contains("caPem")
        );
        // An agent without the file compiles the flow from the shipped PEM.
        std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
        check_flows(&loaded.test, loaded.protos.as_ref()).unwrap();
    }
}
