//! `barrage`: parses arguments, sets up tracing (warnings, and a k6 script's `console`
//! lines and `--http-debug`'s dumps at info as k6 shows them; `BARRAGE_LOG` overrides), runs the coordinator.

use clap::Parser;

fn main() {
    let args = barrage_coordinator::cli::Cli::parse();
    if let Err(e) = init_logs(&args) {
        eprintln!("error: {e}");
        std::process::exit(barrage_coordinator::exit::ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(barrage_coordinator::exit::ERROR);
        }
    };
    let code = runtime.block_on(barrage_coordinator::main_with_args(args));
    // Worker threads and pools are done; do not wait for idle connection tasks.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// Tracing as `--log-output` and `--log-format` say; colours only on a terminal.
fn init_logs(args: &barrage_coordinator::cli::Cli) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_from_env("BARRAGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,console=info,http_debug=info")
    });
    let (writer, tty) = match args.log_output.as_str() {
        "stderr" => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        "stdout" => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        "none" => (BoxMakeWriter::new(std::io::sink), false),
        other => match other.strip_prefix("file=") {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--log-output {other}: {e}"))?;
                (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
            }
            None => {
                return Err(format!(
                    "--log-output {other:?}: expected stderr, stdout, none or file=PATH"
                ));
            }
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match args.log_format {
        barrage_coordinator::cli::LogFormat::Json => builder.json().init(),
        barrage_coordinator::cli::LogFormat::Text => builder.with_ansi(tty).init(),
    }
    Ok(())
}
