//! The real `sumflow` binary stops promptly on SIGTERM (how systemd and Kubernetes
//! stop it), with a client still connected on each port, and exits 0.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::grpc_client;
use sumflow::pb::SumRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `addr=` fields of the log lines announcing the gRPC and HTTP listeners, in
/// whichever order sumflow logs them; fails after `within`. The rest of the log is
/// drained so that sumflow never blocks on a full pipe.
fn logged_addrs(stdout: std::process::ChildStdout, within: Duration) -> (SocketAddr, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr_in = |line: &str| -> Option<SocketAddr> {
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let deadline = Instant::now() + within;
    let (mut grpc, mut http) = (None, None);
    while grpc.is_none() || http.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("sumflow did not log both listeners within {within:?}"));
        if line.contains("adder serving gRPC") {
            grpc = addr_in(&line);
        } else if line.contains("serving HTTP") {
            http = addr_in(&line);
        }
    }
    (grpc.unwrap(), http.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_within_a_second_with_clients_connected() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sumflow"))
        .args([
            "standalone",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (grpc, http) = logged_addrs(child.stdout.take().unwrap(), Duration::from_secs(20));

    // A gRPC connection and an HTTP keep-alive connection, both left open.
    let mut client = grpc_client(grpc).await;
    client.sum_numbers(SumRequest { x: 1, y: 2 }).await.unwrap();
    let mut keep_alive = tokio::net::TcpStream::connect(http).await.unwrap();
    keep_alive
        .write_all(b"GET /v1/healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = keep_alive.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = signalled + Duration::from_secs(1);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sumflow still running a second after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    drop(client);
}
