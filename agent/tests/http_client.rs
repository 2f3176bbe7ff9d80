//! The HTTP client against real axum servers on 127.0.0.1:0 (HTTP/1.1, h2c, TLS with ALPN),
//! whose accept loops count connections.

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::routing::{get, post};
use barrage_agent::allow::{AllowList, AllowTarget};
use barrage_agent::http::{
    HttpClient, HttpClientOptions, HttpError, HttpRequest, HttpResponse, error_code,
};
use barrage_test_support::{TestPki, TestServer, unused_addr};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

fn app() -> Router {
    Router::new()
        .route(
            "/hello",
            get(|uri: Uri, headers: AxumHeaders| async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                // HTTP/2 carries the host in :authority, which lands in the URI.
                let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                axum::Json(json!({
                    "host": header("host"),
                    "authority": authority,
                    "x_test": header("x-test"),
                }))
            }),
        )
        .route(
            "/echo",
            post(|headers: AxumHeaders, body: Bytes| async move {
                let content_type = headers
                    .get("content-type")
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("none"));
                ([("content-type", content_type)], body)
            }),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
            }),
        )
        .route(
            "/never",
            get(|| async {
                std::future::pending::<()>().await;
            }),
        )
}

/// URLs of a test server.
trait Url {
    fn url(&self, scheme: &str, path: &str) -> Uri;
}

impl Url for TestServer {
    fn url(&self, scheme: &str, path: &str) -> Uri {
        format!("{scheme}://{}{path}", self.addr()).parse().unwrap()
    }
}

/// The axum app on 127.0.0.1:0, counting TCP connections.
async fn start_server(tls: Option<TlsAcceptor>) -> TestServer {
    TestServer::start(|incoming, signal| async move {
        let router = app();
        loop {
            let stream = tokio::select! {
                _ = signal.cancelled() => return,
                conn = incoming.accept() => match conn {
                    Ok((stream, _peer)) => stream,
                    Err(_) => continue,
                },
            };
            let (router, tls, signal) = (router.clone(), tls.clone(), signal.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| router.clone().oneshot(req));
                // Speaks HTTP/1.1 and, on seeing the preface, h2c prior knowledge.
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! { _ = conn => {}, _ = signal.cancelled() => {} }
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! { _ = conn => {}, _ = signal.cancelled() => {} }
                    }
                }
            });
        }
    })
    .await
}

fn client() -> HttpClient {
    HttpClient::new(&HttpClientOptions::default()).unwrap()
}

fn get_request(uri: Uri) -> HttpRequest {
    HttpRequest {
        method: Method::GET,
        uri,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        want_headers: true,
    }
}

fn json_body(response: &HttpResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn get_sends_headers_and_host() {
    let server = start_server(None).await;
    let mut request = get_request(server.url("http", "/hello"));
    request
        .headers
        .insert("x-test", HeaderValue::from_static("yes"));
    let response = client().send(&request, TIMEOUT).await;

    assert_eq!(response.status, 200, "{:?}", response.error);
    assert_eq!(response.error, None);
    assert_eq!(response.error_code, 0);
    assert_eq!(response.proto, "HTTP/1.1");
    let body = json_body(&response);
    assert_eq!(
        body["host"],
        json!(server.addr().to_string()),
        "Host is set"
    );
    assert_eq!(body["x_test"], json!("yes"));
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert!(response.timings.waiting <= response.duration);
    assert!(response.bytes_received > response.body.len() as u64);
    assert!(response.bytes_sent > "GET /hello HTTP/1.1\r\n".len() as u64);
}

#[tokio::test]
async fn post_json_body_round_trips_and_is_counted() {
    let server = start_server(None).await;
    let payload = Bytes::from(json!({"x": 1, "y": [1, 2, 3]}).to_string());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let response = client()
        .send(
            &HttpRequest {
                method: Method::POST,
                uri: server.url("http", "/echo"),
                headers,
                body: payload.clone(),
                want_headers: true,
            },
            TIMEOUT,
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.error);
    assert_eq!(response.body, payload);
    assert_eq!(
        response.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert!(response.bytes_sent >= payload.len() as u64 + 40);
    assert!(response.bytes_received >= payload.len() as u64 + 17);
}

#[tokio::test]
async fn error_statuses_are_responses_with_k6_codes() {
    let server = start_server(None).await;
    let http = client();
    for (code, expected_error_code) in [(204, 0), (404, 1404), (503, 1503)] {
        let response = http
            .send(
                &get_request(server.url("http", &format!("/status/{code}"))),
                TIMEOUT,
            )
            .await;
        assert_eq!(response.status, code);
        assert_eq!(response.error_code, expected_error_code);
        assert_eq!(
            response.error, None,
            "an HTTP status is not a transport error"
        );
    }
}

#[tokio::test]
async fn sequential_requests_reuse_one_keep_alive_connection() {
    let server = start_server(None).await;
    let http = client();
    for _ in 0..200 {
        let response = http
            .send(&get_request(server.url("http", "/hello")), TIMEOUT)
            .await;
        assert_eq!(response.status, 200, "{:?}", response.error);
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn concurrent_closed_loops_keep_their_connections() {
    let server = start_server(None).await;
    let http = client();
    let vus = 20;
    let mut tasks = Vec::new();
    for _ in 0..vus {
        let (http, uri) = (http.clone(), server.url("http", "/hello"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let response = http.send(&get_request(uri.clone()), TIMEOUT).await;
                assert_eq!(response.status, 200, "{:?}", response.error);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let accepted = server.accepted();
    // At most one connection per concurrent VU, never one per request (500 requests).
    assert!(accepted <= vus, "{accepted} connections for {vus} VUs");
}

#[tokio::test]
async fn http2_prior_knowledge_multiplexes_on_one_connection() {
    let server = start_server(None).await;
    let http = HttpClient::new(&HttpClientOptions {
        http2_prior_knowledge: true,
        ..Default::default()
    })
    .unwrap();
    // Open the connection first so that the concurrent requests find it.
    let first = http
        .send(&get_request(server.url("http", "/hello")), TIMEOUT)
        .await;
    assert_eq!(first.status, 200, "{:?}", first.error);
    assert_eq!(first.proto, "HTTP/2.0");
    assert_eq!(
        json_body(&first)["authority"],
        json!(server.addr().to_string())
    );

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, uri) = (http.clone(), server.url("http", "/hello"));
        tasks.push(tokio::spawn(async move {
            http.send(&get_request(uri), TIMEOUT).await
        }));
    }
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, 200, "{:?}", response.error);
        assert_eq!(response.proto, "HTTP/2.0");
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn refused_connection_is_status_0_with_error_1212() {
    let uri: Uri = format!("http://{}/", unused_addr()).parse().unwrap();
    let response = client().send(&get_request(uri), TIMEOUT).await;
    assert_eq!(response.status, 0);
    assert_eq!(response.error_code, error_code::TCP_DIAL_REFUSED);
    let error = response.error.unwrap();
    assert!(error.to_lowercase().contains("refused"), "{error}");
    assert_eq!(response.proto, "");
    assert_eq!(response.bytes_received, 0);
    // k6 1.1 on a refused port: every phase 0, nothing sent or received.
    assert_eq!(response.duration, Duration::ZERO);
    assert_eq!(response.timings, Default::default());
    assert_eq!(response.bytes_sent, 0);
}

#[tokio::test]
async fn a_dial_the_allow_list_refuses_is_error_1111_and_never_connects() {
    let server = start_server(None).await;
    let allowed = server.addr();
    let elsewhere = start_server(None).await;
    let only = |port: u16| {
        let entry: AllowTarget = format!("127.0.0.1:{port}").parse().unwrap();
        AllowList::only(&[entry])
    };
    // Plain HTTP/1.1 (the h1 pool) and h2c (hyper's connector) dial differently.
    for h2 in [false, true] {
        let http = HttpClient::new(&HttpClientOptions {
            http2_prior_knowledge: h2,
            allow: only(allowed.port()),
            ..Default::default()
        })
        .unwrap();
        let ok = http
            .send(&get_request(server.url("http", "/hello")), TIMEOUT)
            .await;
        assert_eq!(ok.status, 200, "h2 {h2}: {:?}", ok.error);
        for _ in 0..2 {
            let refused = http
                .send(&get_request(elsewhere.url("http", "/hello")), TIMEOUT)
                .await;
            assert_eq!(refused.status, 0, "h2 {h2}");
            assert_eq!(refused.error_code, error_code::BLOCKED_HOSTNAME, "h2 {h2}");
            let error = refused.error.unwrap_or_default();
            assert!(
                error.contains(&format!("127.0.0.1:{}", elsewhere.addr().port()))
                    && error.contains("--allow-target"),
                "h2 {h2}: {error}"
            );
            assert_eq!(refused.duration, Duration::ZERO);
            assert_eq!((refused.bytes_sent, refused.bytes_received), (0, 0));
        }
    }
    assert_eq!(server.accepted(), 2, "one connection per client");
    assert_eq!(
        elsewhere.accepted(),
        0,
        "a refused dial never reaches the target"
    );
}

#[tokio::test]
async fn timeout_is_status_0_with_error_1050() {
    let server = start_server(None).await;
    let start = Instant::now();
    let response = client()
        .send(
            &get_request(server.url("http", "/never")),
            Duration::from_millis(200),
        )
        .await;
    let elapsed = start.elapsed();
    assert_eq!(response.status, 0);
    assert_eq!(response.error_code, error_code::REQUEST_TIMEOUT);
    assert!(response.error.unwrap().contains("timeout"));
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(response.duration >= Duration::from_millis(200));
}

#[tokio::test]
async fn url_without_host_is_error_1020() {
    let response = client()
        .send(&get_request(Uri::from_static("/relative")), TIMEOUT)
        .await;
    assert_eq!(response.status, 0);
    assert_eq!(response.error_code, error_code::INVALID_URL);
}

// ---------------------------------------------------------------------------------------
// TLS.

/// A TLS acceptor with the test PKI's server certificate, offering h2 and http/1.1.
fn tls_acceptor(pki: &TestPki) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn https_with_ca_negotiates_h2_and_reuses_the_connection() {
    let pki = TestPki::generate();
    let server = start_server(Some(tls_acceptor(&pki))).await;
    let http = HttpClient::new(&HttpClientOptions {
        ca_pem: Some(pki.ca_pem.into_bytes()),
        ..Default::default()
    })
    .unwrap();
    for i in 0..20 {
        let response = http
            .send(&get_request(server.url("https", "/hello")), TIMEOUT)
            .await;
        assert_eq!(response.status, 200, "{:?}", response.error);
        assert_eq!(response.proto, "HTTP/2.0", "ALPN picked h2");
        // The first request paid for the dial and the handshake, outside its duration.
        let t = response.timings;
        assert_eq!(t.connecting > Duration::ZERO, i == 0, "{i}: {t:?}");
        assert_eq!(t.tls_handshaking > Duration::ZERO, i == 0, "{i}: {t:?}");
        assert_eq!(response.duration, t.sending + t.waiting + t.receiving);
    }
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn https_insecure_skip_verify_accepts_an_unknown_ca() {
    let pki = TestPki::generate();
    let server = start_server(Some(tls_acceptor(&pki))).await;
    let insecure = HttpClient::new(&HttpClientOptions {
        insecure_skip_verify: true,
        ..Default::default()
    })
    .unwrap();
    let response = insecure
        .send(&get_request(server.url("https", "/hello")), TIMEOUT)
        .await;
    assert_eq!(response.status, 200, "{:?}", response.error);

    // The built-in web PKI roots do not know the test CA.
    let strict = client();
    let response = strict
        .send(&get_request(server.url("https", "/hello")), TIMEOUT)
        .await;
    assert_eq!(response.status, 0);
    assert_eq!(
        response.error_code,
        error_code::TLS_UNKNOWN_AUTHORITY,
        "{:?}",
        response.error
    );
}

#[test]
fn unusable_ca_pem_is_rejected_up_front() {
    let err = HttpClient::new(&HttpClientOptions {
        ca_pem: Some(b"not a pem".to_vec()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, HttpError::Tls { .. }), "{err}");
}

/// A raw HTTP/1.x server on 127.0.0.1:0 for framing edge cases: for each request head
/// it reads, `answer` gives the bytes to write back and whether to close afterwards.
/// Returns the URL base and the server (which counts accepted connections and stops
/// when dropped: keep it while the test runs).
async fn raw_server(
    answer: impl Fn(&str) -> (Vec<u8>, bool) + Send + Sync + 'static,
) -> (String, TestServer) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = Arc::new(answer);
    let server = TestServer::start(|incoming, _stop| async move {
        while let Ok((mut stream, _)) = incoming.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // Requests in these tests have no body: one head = one request.
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let (bytes, close) = answer(&head);
                        if stream.write_all(&bytes).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    })
    .await;
    (format!("http://{}", server.addr()), server)
}

fn uri(base: &str, path: &str) -> Uri {
    format!("{base}{path}").parse().unwrap()
}

#[tokio::test]
async fn chunked_response_is_decoded_and_bytes_counted_exactly() {
    let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
    let (base, server) = raw_server(move |_| (wire.to_vec(), false)).await;
    let http = client();
    for i in 0..3 {
        // Framing works the same whether or not the caller wants the headers.
        let want_headers = i != 1;
        let r = http
            .send(
                &HttpRequest {
                    want_headers,
                    ..get_request(uri(&base, "/c"))
                },
                TIMEOUT,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.error);
        assert_eq!(&r.body[..], b"hello, world");
        assert_eq!(r.headers.contains_key("transfer-encoding"), want_headers);
        assert_eq!(r.bytes_received, wire.len() as u64);
        // "GET /c HTTP/1.1\r\n" + "host: 127.0.0.1:PORT\r\n" + "\r\n"
        let host_len = base.trim_start_matches("http://").len();
        assert_eq!(r.bytes_sent, (17 + 8 + host_len + 2) as u64);
    }
    assert_eq!(server.accepted(), 1, "chunked keeps the connection");
}

#[tokio::test]
async fn body_delimited_by_close_is_read_to_the_end_and_not_reused() {
    let (base, server) = raw_server(|_| {
        (
            b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec(),
            true,
        )
    })
    .await;
    let http = client();
    for _ in 0..3 {
        let lean = HttpRequest {
            want_headers: false,
            ..get_request(uri(&base, "/"))
        };
        let r = http.send(&lean, TIMEOUT).await;
        assert_eq!(r.status, 200, "{:?}", r.error);
        assert_eq!(&r.body[..], b"until the end");
        assert_eq!(r.proto, "HTTP/1.0");
    }
    assert_eq!(server.accepted(), 3);
}

#[tokio::test]
async fn idle_connections_closed_by_the_server_are_replaced_without_an_error() {
    // Keep-alive announced, then the server closes right after each response: the
    // next request finds a dead pooled connection.
    let (base, server) = raw_server(|_| {
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            true,
        )
    })
    .await;
    let http = client();
    for i in 0..20 {
        let r = http.send(&get_request(uri(&base, "/")), TIMEOUT).await;
        assert_eq!(r.status, 200, "request {i}: {:?}", r.error);
        assert_eq!(&r.body[..], b"ok");
    }
    assert_eq!(server.accepted(), 20);
}

#[tokio::test]
async fn interim_100_continue_is_skipped_and_head_has_no_body() {
    let (base, _server) = raw_server(|head| {
        if head.starts_with("HEAD") {
            // A HEAD answer announces a length but carries no body.
            (b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n".to_vec(), false)
        } else {
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-a: 1\r\nx-a: 2\r\n\r\ndone"
                    .to_vec(),
                false,
            )
        }
    })
    .await;
    let http = client();
    let r = http.send(&get_request(uri(&base, "/x")), TIMEOUT).await;
    assert_eq!(r.status, 201, "{:?}", r.error);
    assert_eq!(&r.body[..], b"done");
    assert_eq!(r.headers.get_all("x-a").iter().count(), 2);
    let mut head = get_request(uri(&base, "/x"));
    head.method = Method::HEAD;
    let r = http.send(&head, Duration::from_secs(2)).await;
    assert_eq!(r.status, 200, "{:?}", r.error);
    assert!(r.body.is_empty());
    // The connection is still usable after the bodiless answer.
    let r = http.send(&get_request(uri(&base, "/x")), TIMEOUT).await;
    assert_eq!(r.status, 201, "{:?}", r.error);
}

#[tokio::test]
async fn malformed_or_truncated_responses_are_status_0_errors() {
    let (base, _server) = raw_server(|head| {
        if head.contains("/garbage") {
            (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), true)
        } else {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".to_vec(),
                true,
            )
        }
    })
    .await;
    let http = client();
    let r = http
        .send(&get_request(uri(&base, "/garbage")), TIMEOUT)
        .await;
    assert_eq!(r.status, 0);
    assert!(
        r.error.as_deref().unwrap_or("").contains("malformed"),
        "{:?}",
        r.error
    );
    let r = http.send(&get_request(uri(&base, "/short")), TIMEOUT).await;
    assert_eq!(r.status, 0);
    assert!(
        r.error.as_deref().unwrap_or("").contains("closed"),
        "{:?}",
        r.error
    );
}

#[tokio::test]
async fn unknown_host_is_a_dns_error() {
    let http = client();
    let r = http
        .send(
            &get_request("http://no-such-host.invalid/".parse().unwrap()),
            TIMEOUT,
        )
        .await;
    assert_eq!(r.status, 0);
    assert!(
        [error_code::DNS, error_code::DNS_NO_SUCH_HOST].contains(&r.error_code),
        "{} {:?}",
        r.error_code,
        r.error
    );
}

#[tokio::test]
async fn credentials_in_the_url_become_basic_auth_not_host() {
    let (base, _server) = raw_server(|head| {
        let lower = format!("{}\r\n", head.to_ascii_lowercase());
        // base64("user:pass") = "dXNlcjpwYXNz" (compared in lower case here).
        let ok = lower.contains("\r\nauthorization: basic dxnlcjpwyxnz\r\n")
            && !lower.contains("user:pass@");
        let status = if ok { "200 OK" } else { "400 Bad Request" };
        (
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").into_bytes(),
            false,
        )
    })
    .await;
    let with_user = base.replacen("http://", "http://user:pass@", 1);
    let r = client()
        .send(&get_request(uri(&with_user, "/")), TIMEOUT)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.error);
}

#[tokio::test]
async fn idle_connections_beyond_the_limit_are_closed() {
    let (base, server) = raw_server(|_| {
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            false,
        )
    })
    .await;
    let http = HttpClient::new(&HttpClientOptions {
        max_idle_per_host: 1,
        ..HttpClientOptions::default()
    })
    .unwrap();
    // Two waves of 5 concurrent requests: the second finds one idle connection.
    let req = get_request(uri(&base, "/"));
    for wave in 1..=2 {
        let requests = (0..5).map(|_| http.send(&req, TIMEOUT));
        for r in futures::future::join_all(requests).await {
            assert_eq!(r.status, 200, "wave {wave}: {:?}", r.error);
        }
    }
    assert_eq!(server.accepted(), 9);
}

#[tokio::test]
async fn request_phases_are_measured_like_k6() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The server waits 60 ms before the head and 40 ms between the head and the body.
    let server = TestServer::start(|incoming, _stop| async move {
        while let Ok((mut stream, _)) = incoming.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        tokio::time::sleep(Duration::from_millis(60)).await;
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
                            .await;
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        if stream.write_all(b"done").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    })
    .await;
    let base = format!("http://{}", server.addr());
    let http = client();
    let req = get_request(uri(&base, "/slow"));
    let first = http.send(&req, TIMEOUT).await;
    let again = http.send(&req, TIMEOUT).await;
    for (r, new_connection) in [(&first, true), (&again, false)] {
        assert_eq!(r.status, 200, "{:?}", r.error);
        assert_eq!(&r.body[..], b"done");
        let t = r.timings;
        assert!(t.waiting >= Duration::from_millis(60), "{t:?}");
        assert!(t.receiving >= Duration::from_millis(35), "{t:?}");
        assert_eq!(r.duration, t.sending + t.waiting + t.receiving);
        assert_eq!(t.tls_handshaking, Duration::ZERO);
        // Only a new connection spends time connecting.
        assert_eq!(t.connecting > Duration::ZERO, new_connection, "{t:?}");
    }
    // A failure before any connection: all in blocked, nothing sent.
    let refused = unused_addr();
    let r = http
        .send(
            &get_request(uri(&format!("http://{refused}"), "/")),
            TIMEOUT,
        )
        .await;
    assert_eq!(r.status, 0);
    assert_eq!(r.bytes_sent, 0);
    assert_eq!(r.timings.waiting, Duration::ZERO);
}
