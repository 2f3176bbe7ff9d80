//! `barrage agent` and `barrage relay`: serve the control protocol until SIGTERM or
//! Ctrl-C, the agent with its engine, the relay with the agents behind it.

use std::net::SocketAddr;
use std::time::Duration;

use barrage_agent::server::{AgentConfig, AgentService, AllowTarget, Engine, Runner};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::cli::{AgentArgs, RelayArgs};
use crate::exit;
use crate::relay::{Relay, RelayConfig};
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
    match serve(args, Engine, "agent").await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

/// Runs the relay server; returns the exit code.
pub async fn relay_command(args: RelayArgs) -> i32 {
    let relay = match relay_config(&args) {
        Ok(c) => Relay::new(c),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let server = AgentArgs {
        listen: args.listen,
        token_file: args.token_file,
        insecure_no_auth: args.insecure_no_auth,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_client_ca: args.tls_client_ca,
        allow_target: Vec::new(),
        name: args.name,
        workers: None,
    };
    match serve(server, relay, "relay").await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::ERROR
        }
    }
}

/// The relay's agents and how to reach them (the token it serves with, and the
/// `--agent-tls-*` files), or what is wrong.
fn relay_config(args: &RelayArgs) -> Result<RelayConfig, String> {
    let agents = crate::settings::with_agents_files(args.agents.clone(), &args.agents_files)?;
    if agents.is_empty() && args.agents_dns.is_empty() {
        return Err(
            "barrage relay needs --agent HOST:PORT, --agents-file PATH or --agents-dns NAME:PORT"
                .into(),
        );
    }
    let read =
        |p: &std::path::PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let identity = match (&args.agent_tls_cert, &args.agent_tls_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(RelayConfig {
        agents,
        agents_dns: args.agents_dns.clone(),
        connect: crate::agents::ConnectOptions {
            token: read_token(&args.token_file)?,
            ca_pem: args.agent_tls_ca.as_ref().map(read).transpose()?,
            identity,
            domain: args.agent_tls_domain.clone(),
        },
        dump_batches: args.dump_batches.clone(),
    })
}

async fn serve<R: Runner>(args: AgentArgs, runner: R, what: &str) -> Result<(), String> {
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
    // The actual address on stdout, so scripts and tests can use port 0: the first
    // line, `barrage agent|relay listening on HOST:PORT`, the address its last word
    // (documented in the README; the control_plane bench and the tests read it).
    println!("barrage {what} listening on {addr}");
    tracing::info!(%addr, "barrage {what} listening");
    let shutdown = CancellationToken::new();
    let service = AgentService::with_runner(config, shutdown.clone(), runner).into_server();
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
