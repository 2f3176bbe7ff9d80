//! The helpers themselves: waits end when the condition holds and fail naming it,
//! servers count their connections and stop, the PKI is all PEM.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use barrage_test_support::{TestPki, TestServer, unused_addr, wait_until};
use tokio::net::TcpStream;

#[tokio::test]
async fn wait_until_returns_the_value_once_the_condition_holds() {
    let probes = AtomicUsize::new(0);
    let value = wait_until("the third probe", Duration::from_secs(5), || async {
        let n = probes.fetch_add(1, Ordering::SeqCst) + 1;
        (n >= 3).then_some(n * 10)
    })
    .await;
    assert_eq!(value, 30);
    wait_until("true", Duration::ZERO, || async { true }).await;
}

#[tokio::test]
#[should_panic(expected = "timed out after 100ms waiting for the moon (last: 7 so far)")]
async fn wait_until_fails_naming_what_it_waited_for_and_the_last_seen() {
    wait_until("the moon", Duration::from_millis(100), || async {
        Err::<(), _>("7 so far")
    })
    .await;
}

#[tokio::test]
async fn wait_until_probes_last_at_its_deadline_then_gives_up() {
    let within = Duration::from_millis(200);
    let last_probe = std::sync::Arc::new(std::sync::Mutex::new(None));
    let started = Instant::now();
    let seen = last_probe.clone();
    let result = tokio::spawn(async move {
        wait_until("never", within, || async {
            *seen.lock().unwrap() = Some(Instant::now());
            false
        })
        .await;
    })
    .await;
    assert!(result.unwrap_err().is_panic());
    let last = last_probe.lock().unwrap().unwrap() - started;
    assert!(last >= within, "last probe {last:?} before the deadline");
    assert!(last < within + Duration::from_secs(1), "{last:?}");
}

#[tokio::test]
async fn test_server_counts_connections_and_stops() {
    let mut server = TestServer::start(|incoming, stop| async move {
        let mut open = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                conn = incoming.accept() => open.push(conn.unwrap()),
            }
        }
    })
    .await;
    assert_eq!(server.addr().ip().to_string(), "127.0.0.1");
    let _a = TcpStream::connect(server.addr()).await.unwrap();
    let _b = TcpStream::connect(server.addr()).await.unwrap();
    wait_until("2 accepted connections", Duration::from_secs(5), || async {
        server.accepted() == 2
    })
    .await;
    server.shutdown().await;
    server.shutdown().await;
    assert!(TcpStream::connect(server.addr()).await.is_err());
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn nothing_listens_on_an_unused_addr() {
    assert!(TcpStream::connect(unused_addr()).await.is_err());
}

#[test]
fn the_pki_is_pem_and_fresh_each_time() {
    let (a, b) = (TestPki::generate(), TestPki::generate());
    for cert in [&a.ca_pem, &a.server_cert_pem, &a.client_cert_pem] {
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    }
    for key in [&a.server_key_pem, &a.client_key_pem] {
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }
    assert_ne!(a.ca_pem, b.ca_pem);
    assert_ne!(a.server_cert_pem, a.client_cert_pem);
}
