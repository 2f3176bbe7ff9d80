//! `barrage agent`: serves the control protocol until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use barrage_agent::server::{AgentConfig, AgentService, AllowTarget};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::cli::AgentArgs;
use crate::exit;
use crate::settings::read_token;

/// Longest wait from SIGTERM to exit while the control streams drain.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);

/// Validated agent settings, or a message saying what is wrong.
pub fn config(args: &AgentArgs, addr: &SocketAddr) -> Result<AgentConfig, String> {
    let token = read_token(&args.token_file)?;
    if token.is_none() && !addr.ip().is_loopback() && !args.insecure_no_auth {
        return Err(format!(
            "refusing to listen on {addr} without a token: anyone who can reach it could aim load anywhere. \
             Give --token-file or BARRAGE_TOKEN, listen on 127.0.0.1, or pass --insecure-no-auth"
        ));
    }
    let allow_targets = args
        .allow_target
        .iter()
        .map(|t| {
            t.parse::<AllowTarget>()
                .map_err(|e| format!("--allow-target {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AgentConfig {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| addr.to_string())),
        token,
        allow_targets,
        workers: args.workers.unwrap_or(0),
    })
}

/// Runs the agent server; returns the exit code.
pub async fn agent_command(args: AgentArgs) -> i32 {
    match serve(args).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

async fn serve(args: AgentArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let config = config(&args, &addr)?;
    let mut server = Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read =
            |p: &std::path::PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &args.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        server = server.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    let signal =
        crate::run::stop_signal().map_err(|e| format!("cannot listen for signals: {e}"))?;
    // The actual address on stdout, so scripts and tests can use port 0.
    println!("barrage agent listening on {addr}");
    let shutdown = CancellationToken::new();
    let service = AgentService::with_shutdown(config, shutdown.clone()).into_server();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let serving = server
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(serving);
    tokio::select! {
        r = &mut serving => return r.map_err(|e| e.to_string()),
        () = signal => shutdown.cancel(),
    }
    // SIGTERM or Ctrl-C: a running test stops its load and streams its last batch; the
    // server drains. systemd and Kubernetes expect a prompt exit, so wait at most this.
    match tokio::time::timeout(SHUTDOWN_GRACE, serving).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::warn!("stopped before the control streams drained");
            Ok(())
        }
    }
}
