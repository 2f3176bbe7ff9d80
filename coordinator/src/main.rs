//! `barrage`: parses arguments, sets up tracing (warnings, and a k6 script's `console`
//! lines at info as k6 shows them; `BARRAGE_LOG` overrides), runs the coordinator.

use clap::Parser;

fn main() {
    let args = barrage_coordinator::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BARRAGE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,console=info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
