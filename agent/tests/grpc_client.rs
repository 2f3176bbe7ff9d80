//! The dynamic gRPC client against a real tonic server on 127.0.0.1:0 that serves
//! `tests/protos/echo.proto` from its descriptors (no generated code on either side).

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use barrage_agent::allow::{AllowList, AllowTarget};
use barrage_agent::grpc::{
    GrpcClient, GrpcError, GrpcTls, ProtoSet, code_name, json_to_message, message_to_json,
    message_to_value, proto_set_from_reflection,
};
use barrage_test_support::{TestPki, TestServer, unused_addr, wait_until};
use bytes::{Buf, BufMut};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use serde_json::json;
use tokio::net::TcpListener;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

fn protos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/protos")
}

fn echo_protos() -> ProtoSet {
    ProtoSet::compile(&[protos_dir()], &["echo.proto".to_owned()]).unwrap()
}

// ---------------------------------------------------------------------------------------
// Test server: test.Echo implemented over DynamicMessage with a server-side codec.

#[derive(Clone)]
struct ServerCodec {
    input: MessageDescriptor,
}

impl Codec for ServerCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = ServerCodec;
    type Decoder = ServerCodec;

    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.clone()
    }
}

impl Encoder for ServerCodec {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.encode_to_vec());
        Ok(())
    }
}

impl Decoder for ServerCodec {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        DynamicMessage::decode(self.input.clone(), bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// What the server saw, for assertions.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    peers: Mutex<HashSet<SocketAddr>>,
}

#[derive(Clone)]
struct EchoService {
    protos: ProtoSet,
    seen: Arc<Seen>,
}

impl NamedService for EchoService {
    const NAME: &'static str = "test.Echo";
}

/// The unary handlers.
#[derive(Clone)]
struct Handler {
    method: &'static str,
    reply: MessageDescriptor,
}

impl tower::Service<tonic::Request<DynamicMessage>> for Handler {
    type Response = tonic::Response<DynamicMessage>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<DynamicMessage>) -> Self::Future {
        let handler = self.clone();
        Box::pin(async move {
            if handler.method == "Slow" {
                std::future::pending::<()>().await;
            }
            let get = |name: &str| {
                request
                    .get_ref()
                    .get_field_by_name(name)
                    .and_then(|v| v.as_i64())
                    .unwrap_or_default()
            };
            let (a, b) = (get("a"), get("b"));
            if a < 0 {
                return Err(Status::invalid_argument("a must be >= 0"));
            }
            let mut reply = DynamicMessage::new(handler.reply.clone());
            reply.set_field_by_name("sum", Value::I64(a + b));
            if let Some(note) = request.metadata().get("x-note") {
                let note = note.to_str().unwrap_or("?").to_owned();
                reply.set_field_by_name("note", Value::String(note));
            }
            let mut response = tonic::Response::new(reply);
            response
                .metadata_mut()
                .insert("x-sum", (a + b).to_string().parse().unwrap());
            Ok(response)
        })
    }
}

impl tower::Service<http::Request<Body>> for EchoService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.seen.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(info) = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr())
        {
            self.seen.peers.lock().unwrap().insert(info);
        }
        let method = match request.uri().path() {
            "/test.Echo/Add" => "Add",
            "/test.Echo/Slow" => "Slow",
            _ => {
                return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
            }
        };
        let pool = self.protos.pool();
        let codec = ServerCodec {
            input: pool.get_message_by_name("test.AddRequest").unwrap(),
        };
        let handler = Handler {
            method,
            reply: pool.get_message_by_name("test.AddReply").unwrap(),
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(handler, request).await)
        })
    }
}

/// The echo server (counting connections, stopped on drop) and what it saw.
struct EchoServer {
    server: TestServer,
    seen: Arc<Seen>,
}

impl Deref for EchoServer {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

impl DerefMut for EchoServer {
    fn deref_mut(&mut self) -> &mut TestServer {
        &mut self.server
    }
}

#[derive(Default)]
struct ServerOptions {
    listener: Option<TcpListener>,
    tls: Option<Identity>,
    reflection: Option<&'static str>,
}

async fn start_server(opts: ServerOptions) -> EchoServer {
    let listener = match opts.listener {
        Some(l) => l,
        None => barrage_test_support::bind().await,
    };
    let seen = Arc::new(Seen::default());
    let protos = echo_protos();
    let mut builder = Server::builder();
    if let Some(identity) = opts.tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap();
    }
    let echo = EchoService {
        protos: protos.clone(),
        seen: seen.clone(),
    };
    // The reflection builder borrows the descriptor bytes for 'static.
    let descriptors: &'static [u8] = protos.descriptor_set_bytes().leak();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptors);
    let router = match opts.reflection {
        Some("v1") => builder
            .add_service(echo)
            .add_service(reflection.build_v1().unwrap()),
        Some("v1alpha") => builder
            .add_service(echo)
            .add_service(reflection.build_v1alpha().unwrap()),
        _ => builder.add_service(echo),
    };
    let server = TestServer::spawn(listener, |incoming, stop| async move {
        router
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .unwrap();
    });
    EchoServer { server, seen }
}

fn add_request(protos: &ProtoSet, a: i64, b: i64) -> DynamicMessage {
    let method = protos.method("test.Echo/Add").unwrap();
    json_to_message(&method.input(), &json!({"a": a, "b": b})).unwrap()
}

// ---------------------------------------------------------------------------------------
// Descriptors and method lookup.

#[test]
fn compiles_protos_and_round_trips_the_descriptor_set() {
    let protos = echo_protos();
    assert_eq!(protos.services(), vec!["test.Echo".to_owned()]);
    let shipped = ProtoSet::from_descriptor_set(&protos.descriptor_set_bytes()).unwrap();
    let method = shipped.method("test.Echo/Add").unwrap();
    assert_eq!(method.full_name(), "test.Echo/Add");
    assert_eq!(method.path(), "/test.Echo/Add");
    assert_eq!(method.input().full_name(), "test.AddRequest");
    assert_eq!(method.output().full_name(), "test.AddReply");
    // Imports travel with the set: the reply's Timestamp field resolves.
    assert!(
        shipped
            .pool()
            .get_message_by_name("google.protobuf.Timestamp")
            .is_some()
    );
}

#[test]
fn garbage_descriptor_set_is_an_error() {
    let err = ProtoSet::from_descriptor_set(b"\xff\xff\xff").unwrap_err();
    assert!(matches!(err, GrpcError::DescriptorSet { .. }), "{err}");
}

#[test]
fn compile_error_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\npackage bad;\nmessage M { int64 x = ; }\n",
    )
    .unwrap();
    let err =
        ProtoSet::compile(&[dir.path().to_path_buf()], &["bad.proto".to_owned()]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GrpcError::Compile { ref file, .. } if file == "bad.proto"));
    assert!(text.contains("bad.proto:3:"), "no line in {text:?}");
}

#[test]
fn missing_proto_file_is_a_compile_error() {
    let err = ProtoSet::compile(&[protos_dir()], &["nope.proto".to_owned()]).unwrap_err();
    assert!(matches!(err, GrpcError::Compile { ref file, .. } if file == "nope.proto"));
    assert!(err.to_string().contains("nope.proto"), "{err}");
}

#[test]
fn method_lookup_errors_say_what_exists() {
    let protos = echo_protos();
    assert!(
        protos.method("/test.Echo/Add").is_ok(),
        "leading slash accepted"
    );

    let err = protos.method("test.Nope/Add").unwrap_err();
    assert!(matches!(err, GrpcError::UnknownService { .. }), "{err}");
    assert!(err.to_string().contains("test.Echo"), "{err}");

    let err = protos.method("test.Echo/Sub").unwrap_err();
    assert!(matches!(err, GrpcError::UnknownMethod { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("Add") && text.contains("Slow"), "{text}");

    for (name, kind) in [
        ("test.Echo/Watch", "server-streaming"),
        ("test.Echo/Upload", "client-streaming"),
        ("test.Echo/Chat", "bidirectional-streaming"),
    ] {
        let err = protos.method(name).unwrap_err();
        assert!(
            matches!(err, GrpcError::StreamingNotSupported { kind: k, .. } if k == kind),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    for bad in ["test.Echo", "test.Echo/", "/Add", "test.Echo/Add/x"] {
        let err = protos.method(bad).unwrap_err();
        assert!(
            matches!(err, GrpcError::MalformedMethodName { .. }),
            "{bad}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// JSON <-> message.

#[test]
fn json_round_trip_keeps_int64_as_numbers_and_defaults_present() {
    let protos = echo_protos();
    let reply = protos.pool().get_message_by_name("test.AddReply").unwrap();

    // Above 2^53: exact as a string and as a JSON integer.
    let big = 9_007_199_254_740_993_i64;
    let message = json_to_message(
        &reply,
        &json!({
            "sum": big.to_string(),
            "history": [1, "2", big],
            "mood": "HAPPY",
            "bigTotal": u64::MAX,
            "by_name": {"x": {"depth": 3}},
            "at": "2024-01-02T03:04:05Z"
        }),
    )
    .unwrap();
    assert_eq!(
        message.get_field_by_name("sum").unwrap().as_i64(),
        Some(big)
    );

    let back = message_to_json(&message);
    assert_eq!(back["sum"], json!(big), "int64 as a JSON number: {back}");
    assert!(back["sum"].is_i64());
    assert_eq!(back["history"], json!([1, 2, big]));
    assert_eq!(back["mood"], json!("HAPPY"), "enum by name");
    assert_eq!(back["bigTotal"], json!(u64::MAX), "camelCase JSON names");
    assert_eq!(back["byName"]["x"]["depth"], json!(3));
    assert_eq!(back["at"], json!("2024-01-02T03:04:05Z"));
    // Fields at their default value are present.
    assert_eq!(back["note"], json!(""));

    let empty = message_to_json(&DynamicMessage::new(reply));
    assert_eq!(
        empty["sum"],
        json!(0),
        "sum == 0 must be checkable: {empty}"
    );
    assert_eq!(empty["note"], json!(""));
    assert_eq!(empty["mood"], json!("MOOD_UNSPECIFIED"));
    assert_eq!(empty["history"], json!([]));
    assert_eq!(empty["byName"], json!({}));
    assert!(
        empty["inner"].is_null() && empty.get("inner").is_some(),
        "{empty}"
    );
    assert!(empty.get("at").is_some_and(|v| v.is_null()), "{empty}");
}

#[test]
fn json_errors_name_the_field_and_message_type() {
    let protos = echo_protos();
    let reply = protos.pool().get_message_by_name("test.AddReply").unwrap();

    let err = json_to_message(&reply, &json!({"sum": 1, "nope": 2})).unwrap_err();
    assert!(
        matches!(&err, GrpcError::UnknownField { field, message_type }
            if field == "nope" && message_type == "test.AddReply"),
        "{err}"
    );

    let err = json_to_message(&reply, &json!({"inner": {"depth": 1, "deep": 2}})).unwrap_err();
    assert!(
        matches!(&err, GrpcError::UnknownField { field, message_type }
            if field == "deep" && message_type == "test.Inner"),
        "{err}"
    );

    let err = json_to_message(&reply, &json!({"sum": "not a number"})).unwrap_err();
    assert!(
        matches!(&err, GrpcError::Json { message_type, .. } if message_type == "test.AddReply"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Calls.

#[tokio::test]
async fn unary_call_succeeds_with_metadata_both_ways() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let client = GrpcClient::new(&server.addr().to_string(), None).unwrap();

    let response = client
        .unary(
            &method,
            add_request(&protos, 2, 40),
            &[("x-note".to_owned(), "hello".to_owned())],
            Some(Duration::from_secs(10)),
        )
        .await;
    assert_eq!(
        response.code,
        tonic::Code::Ok,
        "{}",
        response.status_message
    );
    assert_eq!(code_name(response.code), "OK");
    let body = message_to_json(response.message.as_ref().unwrap());
    assert_eq!(body["sum"], json!(42));
    assert_eq!(
        body["note"],
        json!("hello"),
        "request metadata reached the server"
    );
    assert!(
        response
            .headers
            .get("x-sum")
            .is_some_and(|v| v.as_bytes() == b"42"),
        "response metadata: {:?}",
        response.headers
    );
    let encoded_request = add_request(&protos, 2, 40).encoded_len() as u64;
    assert!(response.bytes_sent > encoded_request + 5);
    assert!(response.bytes_received > 5);
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_error_comes_back_as_its_status_code() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let client = GrpcClient::new(&format!("http://{}", server.addr()), None).unwrap();

    let response = client
        .unary(&method, add_request(&protos, -1, 1), &[], None)
        .await;
    assert_eq!(response.code, tonic::Code::InvalidArgument);
    assert_eq!(code_name(response.code), "INVALID_ARGUMENT");
    assert_eq!(response.status_message, "a must be >= 0");
    assert!(response.message.is_none());

    // The connection stays usable after an error status.
    let ok = client
        .unary(&method, add_request(&protos, 1, 1), &[], None)
        .await;
    assert_eq!(ok.code, tonic::Code::Ok);
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let port = unused_addr().port();
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let client = GrpcClient::new(&format!("127.0.0.1:{port}"), None).unwrap();
    for _ in 0..2 {
        let response = client
            .unary(
                &method,
                add_request(&protos, 1, 2),
                &[],
                Some(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(response.code, tonic::Code::Unavailable);
        assert_eq!(code_name(response.code), "UNAVAILABLE");
        assert!(response.message.is_none());
        assert_eq!(response.bytes_sent, 0, "nothing went out");
        assert_eq!(response.bytes_received, 0, "nothing came back");
        assert!(!response.connected);
    }
}

#[tokio::test]
async fn a_dial_the_allow_list_refuses_is_permission_denied_and_never_connects() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let other: AllowTarget = "127.0.0.1:1".parse().unwrap();
    let client = GrpcClient::with_allow(
        &server.addr().to_string(),
        None,
        2,
        AllowList::only(&[other]),
    )
    .unwrap();
    for _ in 0..3 {
        let response = client
            .unary(
                &method,
                add_request(&protos, 1, 2),
                &[],
                Some(Duration::from_secs(5)),
            )
            .await;
        assert_eq!(response.code, tonic::Code::PermissionDenied);
        assert!(
            response.status_message.contains("--allow-target"),
            "{}",
            response.status_message
        );
        assert!(!response.connected);
        assert_eq!((response.bytes_sent, response.bytes_received), (0, 0));
    }
    assert_eq!(
        server.accepted(),
        0,
        "a refused dial never reaches the target"
    );
    // The same target allowed: the call goes through.
    let mine: AllowTarget = server.addr().to_string().parse().unwrap();
    let client = GrpcClient::with_allow(
        &server.addr().to_string(),
        None,
        1,
        AllowList::only(&[mine]),
    )
    .unwrap();
    let response = client
        .unary(&method, add_request(&protos, 1, 2), &[], None)
        .await;
    assert_eq!(
        response.code,
        tonic::Code::Ok,
        "{}",
        response.status_message
    );
    assert!(response.connected);
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn timeout_is_deadline_exceeded() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Slow").unwrap();
    let client = GrpcClient::new(&server.addr().to_string(), None).unwrap();

    let start = Instant::now();
    let response = client
        .unary(
            &method,
            add_request(&protos, 1, 2),
            &[],
            Some(Duration::from_millis(200)),
        )
        .await;
    assert_eq!(response.code, tonic::Code::DeadlineExceeded);
    assert_eq!(code_name(response.code), "DEADLINE_EXCEEDED");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");

    // The timed-out stream was reset, the connection goes on.
    let add = protos.method("test.Echo/Add").unwrap();
    let ok = client
        .unary(
            &add,
            add_request(&protos, 1, 2),
            &[],
            Some(Duration::from_secs(10)),
        )
        .await;
    assert_eq!(ok.code, tonic::Code::Ok);
    assert_eq!(server.accepted(), 1);

    // A deadline shorter than any answer: exceeded even though the fast call may have
    // come back before tokio's next timer tick.
    for limit in [Duration::from_nanos(1), Duration::from_micros(1)] {
        let late = client
            .unary(&add, add_request(&protos, 1, 2), &[], Some(limit))
            .await;
        assert_eq!(late.code, tonic::Code::DeadlineExceeded, "{limit:?}");
    }
}

#[tokio::test]
async fn unknown_method_on_server_is_unimplemented() {
    let server = start_server(ServerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("other.proto"),
        "syntax = \"proto3\";\npackage test;\nmessage E {}\nservice Echo { rpc Missing(E) returns (E); }\n",
    )
    .unwrap();
    let protos =
        ProtoSet::compile(&[dir.path().to_path_buf()], &["other.proto".to_owned()]).unwrap();
    let method = protos.method("test.Echo/Missing").unwrap();
    let client = GrpcClient::new(&server.addr().to_string(), None).unwrap();
    let response = client
        .unary(&method, DynamicMessage::new(method.input()), &[], None)
        .await;
    assert_eq!(response.code, tonic::Code::Unimplemented);
}

#[tokio::test]
async fn invalid_metadata_is_invalid_argument_and_sends_nothing() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let client = GrpcClient::new(&server.addr().to_string(), None).unwrap();
    let response = client
        .unary(
            &method,
            add_request(&protos, 1, 2),
            &[("bad key".to_owned(), "v".to_owned())],
            None,
        )
        .await;
    assert_eq!(response.code, tonic::Code::InvalidArgument);
    assert!(response.status_message.contains("bad key"));
    assert_eq!(server.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn concurrent_calls_share_one_connection_or_spread_over_n() {
    let server = start_server(ServerOptions::default()).await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();

    let single = GrpcClient::new(&server.addr().to_string(), None).unwrap();
    let mut tasks = Vec::new();
    for i in 0..50_i64 {
        let (client, method, message) =
            (single.clone(), method.clone(), add_request(&protos, i, i));
        tasks.push(tokio::spawn(async move {
            client.unary(&method, message, &[], None).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let response = task.await.unwrap();
        assert_eq!(response.code, tonic::Code::Ok);
        let sum = message_to_json(response.message.as_ref().unwrap())["sum"].clone();
        assert_eq!(sum, json!(2 * i as i64));
    }
    assert_eq!(server.accepted(), 1, "one shared connection");

    let spread = GrpcClient::with_connections(&server.addr().to_string(), None, 3).unwrap();
    for i in 0..30 {
        let response = spread
            .unary(&method, add_request(&protos, i, 1), &[], None)
            .await;
        assert_eq!(response.code, tonic::Code::Ok);
    }
    assert_eq!(server.accepted(), 1 + 3, "three more connections");
    assert_eq!(server.seen.peers.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn reconnects_after_the_server_restarts() {
    let mut server = start_server(ServerOptions::default()).await;
    let addr = server.addr();
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let client = GrpcClient::new(&addr.to_string(), None).unwrap();
    let call = || {
        client.unary(
            &method,
            add_request(&protos, 1, 2),
            &[],
            Some(Duration::from_secs(5)),
        )
    };

    assert_eq!(call().await.code, tonic::Code::Ok);
    server.shutdown().await;
    // The old connection is gone (GOAWAY, then closed); nothing listens.
    wait_until(
        "calls to fail UNAVAILABLE after shutdown",
        Duration::from_secs(10),
        || {
            let response = call();
            async move {
                match response.await.code {
                    tonic::Code::Unavailable => Ok(()),
                    code => Err(format!("still {code:?}")),
                }
            }
        },
    )
    .await;

    let listener = TcpListener::bind(addr).await.unwrap();
    let restarted = start_server(ServerOptions {
        listener: Some(listener),
        ..Default::default()
    })
    .await;
    let response = call().await;
    assert_eq!(
        response.code,
        tonic::Code::Ok,
        "{}",
        response.status_message
    );
    assert_eq!(restarted.accepted(), 1);
}

#[tokio::test]
async fn descriptors_from_server_reflection_v1_and_v1alpha() {
    for version in ["v1", "v1alpha"] {
        let server = start_server(ServerOptions {
            reflection: Some(version),
            ..Default::default()
        })
        .await;
        let protos =
            proto_set_from_reflection(&server.addr().to_string(), None, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{version}: {e}"));
        let method = protos.method("test.Echo/Add").unwrap();
        let message = json_to_message(&method.input(), &json!({"a": 5, "b": 6})).unwrap();
        let client = GrpcClient::new(&server.addr().to_string(), None).unwrap();
        let response = client.unary(&method, message, &[], None).await;
        assert_eq!(response.code, tonic::Code::Ok, "{version}");
        assert_eq!(
            message_to_json(response.message.as_ref().unwrap())["sum"],
            json!(11)
        );
        assert!(protos.services().contains(&"test.Echo".to_owned()));
    }
}

#[tokio::test]
async fn reflection_on_a_server_without_it_is_an_error() {
    let server = start_server(ServerOptions::default()).await;
    let err = proto_set_from_reflection(&server.addr().to_string(), None, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, GrpcError::Reflection { .. }), "{err}");
    assert!(err.to_string().contains("UNIMPLEMENTED"), "{err}");
}

// ---------------------------------------------------------------------------------------
// TLS.

fn server_identity(pki: &TestPki) -> Identity {
    Identity::from_pem(&pki.server_cert_pem, &pki.server_key_pem)
}

#[tokio::test]
async fn tls_with_ca_or_insecure_skip_verify() {
    let pki = TestPki::generate();
    let server = start_server(ServerOptions {
        tls: Some(server_identity(&pki)),
        ..Default::default()
    })
    .await;
    let protos = echo_protos();
    let method = protos.method("test.Echo/Add").unwrap();
    let port = server.addr().port();

    let with_ca = GrpcTls {
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        domain: Some("localhost".to_owned()),
        ..Default::default()
    };
    let insecure = GrpcTls {
        insecure_skip_verify: true,
        ..Default::default()
    };
    for (addr, tls) in [
        (format!("127.0.0.1:{port}"), Some(&with_ca)),
        (format!("https://127.0.0.1:{port}"), Some(&insecure)),
    ] {
        let client = GrpcClient::new(&addr, tls).unwrap();
        let response = client
            .unary(
                &method,
                add_request(&protos, 3, 4),
                &[],
                Some(Duration::from_secs(10)),
            )
            .await;
        assert_eq!(
            response.code,
            tonic::Code::Ok,
            "{addr}: {}",
            response.status_message
        );
    }

    // The web PKI roots do not know the test CA.
    let untrusted = GrpcClient::new(&format!("https://localhost:{port}"), None).unwrap();
    let response = untrusted
        .unary(
            &method,
            add_request(&protos, 3, 4),
            &[],
            Some(Duration::from_secs(10)),
        )
        .await;
    assert_eq!(response.code, tonic::Code::Unavailable);
    assert!(
        response.status_message.contains("UnknownIssuer")
            || response
                .status_message
                .to_lowercase()
                .contains("unknown issuer"),
        "{}",
        response.status_message
    );
}

#[test]
fn bad_addresses_and_tls_options_are_rejected_up_front() {
    assert!(matches!(
        GrpcClient::new("ftp://x:1", None),
        Err(GrpcError::Address { .. })
    ));
    let bad_ca = GrpcTls {
        ca_pem: Some(b"not pem".to_vec()),
        ..Default::default()
    };
    assert!(matches!(
        GrpcClient::new("localhost:1", Some(&bad_ca)),
        Err(GrpcError::Tls { .. })
    ));
    let half_identity = GrpcTls {
        client_cert_pem: Some(TestPki::generate().client_cert_pem.into_bytes()),
        ..Default::default()
    };
    assert!(matches!(
        GrpcClient::new("localhost:1", Some(&half_identity)),
        Err(GrpcError::Tls { .. })
    ));
}

#[test]
fn response_values_built_directly_equal_the_json_route() {
    use barrage_agent::expr::json_to_value;
    let protos = echo_protos();
    let flat = protos.pool().get_message_by_name("test.Flat").unwrap();
    let cases = [
        json!({}),
        json!({"i32": -7, "i64": "-9007199254740993", "u32": 4_000_000_000_u64, "u64": u64::MAX,
               "f": 1.5, "d": -2.25, "b": true, "someText": "héllo", "mood": "GRUMPY",
               "si": -3, "fx": 12}),
        json!({"u64": 5, "mood": 7, "f": 0.1, "d": 1e300}),
        json!({"f": "NaN", "d": "-Infinity"}),
    ];
    for case in cases {
        let m = json_to_message(&flat, &case).unwrap();
        assert_eq!(
            message_to_value(&m),
            json_to_value(&message_to_json(&m)),
            "{case}"
        );
    }
    // Lists, maps, nested and well-known types go the JSON way, with the same result.
    let reply = protos.pool().get_message_by_name("test.AddReply").unwrap();
    let m = json_to_message(
        &reply,
        &json!({"sum": 3, "history": [1], "inner": {"depth": 2}, "at": "2024-01-02T03:04:05Z"}),
    )
    .unwrap();
    assert_eq!(message_to_value(&m), json_to_value(&message_to_json(&m)));
}

/// Two steps of one flow aim at the same TLS address, one skipping verification and
/// one verifying against the web PKI roots (which do not know the test CA): each must
/// get a client of its own, so the second fails however the first connected.
#[tokio::test]
async fn steps_with_different_tls_settings_do_not_share_a_client() {
    use barrage_agent::flow::{CompileCtx, Flow};
    use barrage_agent::program::{Iteration, Program};
    use barrage_agent::worker::Worker;
    use barrage_common::metrics::SeriesData;
    use barrage_common::scenario::{Overrides, load_str};

    let pki = TestPki::generate();
    let server = start_server(ServerOptions {
        tls: Some(server_identity(&pki)),
        ..Default::default()
    })
    .await;
    let addr = format!("https://localhost:{}", server.addr().port());
    let text = format!(
        r#"
options: {{scenarios: {{s: {{executor: shared-iterations, vus: 1, iterations: 1}}}}}}
protos: {{importPaths: ["{dir}"], files: [echo.proto]}}
flows:
  f:
    - grpc:
        addr: "{addr}"
        method: test.Echo/Add
        message: {{a: 1, b: 2}}
        tls: {{insecureSkipVerify: true}}
        checks: {{"skip-verify connects": "status == OK"}}
    - grpc:
        addr: "{addr}"
        method: test.Echo/Add
        message: {{a: 1, b: 2}}
        tls: {{domain: localhost}}
        checks: {{"verified is refused": "status == UNAVAILABLE"}}
"#,
        dir = protos_dir().display()
    );
    let test = load_str(
        std::path::Path::new("t.yaml"),
        &text,
        |_| None,
        &Overrides::default(),
    )
    .unwrap();
    let protos = echo_protos();
    let worker = std::rc::Rc::new(Worker::new(false, AllowList::anything()).unwrap());
    let flow = Flow::compile(&CompileCtx {
        test: &test,
        scenario: &test.scenarios[0],
        protos: Some(&protos),
        worker: &worker,
    })
    .unwrap();
    let mut vu = flow.new_vu(&worker, 1);
    let _ = flow
        .run_iteration(&worker, &mut vu, Iteration { vu: 1, in_vu: 0 })
        .await;
    let batch = worker.recorder.borrow_mut().take_batch();
    let mut checks: Vec<(String, u64, u64)> = batch
        .series
        .iter()
        .filter(|s| s.metric.name == "checks")
        .filter_map(|s| match &s.data {
            SeriesData::Rate { trues, total } => {
                Some((s.tags.get("check")?.to_string(), *trues, *total))
            }
            _ => None,
        })
        .collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            ("skip-verify connects".to_owned(), 1, 1),
            ("verified is refused".to_owned(), 1, 1)
        ]
    );
}
