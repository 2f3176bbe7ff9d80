//! Cost per request of the protocol clients against minimal in-process hyper servers on
//! 127.0.0.1, all on one current-thread runtime: wall time per iteration is then the CPU
//! time of client plus server on one core (the server side is a bare hyper service, so
//! most of it is the client's and the kernel's).
//!
//! Run: `cargo bench -p barrage-agent --bench clients`.

// Benchmarks may unwrap: a panic is a failed run.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use barrage_agent::grpc::{GrpcClient, ProtoSet, json_to_message, message_to_json};
use barrage_agent::http::{HttpClient, HttpClientOptions, HttpRequest};
use bytes::{BufMut, Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

const CONCURRENCY: usize = 16;

/// A plain HTTP/1.1 server answering every request with a small JSON body.
async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        br#"{"result": 123456}"#,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An h2c server answering every call of any method with one fixed gRPC reply.
async fn grpc_server(reply: Bytes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            stream.set_nodelay(true).unwrap();
            let reply = reply.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let reply = reply.clone();
                    async move {
                        // Read the request message like a real server would.
                        let _ = req.into_body().collect().await;
                        let mut trailers = HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = futures::stream::iter([
                            Ok::<_, Infallible>(Frame::data(reply)),
                            Ok(Frame::trailers(trailers)),
                        ]);
                        let mut response = Response::new(StreamBody::new(frames));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn http_benches(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(http_server());
    let client = HttpClient::new(&HttpClientOptions::default()).unwrap();
    let uri: http::Uri = format!("http://{addr}/v1/results").parse().unwrap();
    let request = || HttpRequest {
        method: Method::GET,
        uri: uri.clone(),
        headers: HeaderMap::new(),
        body: Bytes::new(),
        want_headers: false,
    };

    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_keepalive_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let response = client.send(&request(), Duration::from_secs(5)).await;
                    assert_eq!(response.status, 200);
                }
                start.elapsed()
            })
        });
    });
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("get_keepalive_16_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let req = request();
                let start = Instant::now();
                for _ in 0..iters {
                    let calls = (0..CONCURRENCY).map(|_| client.send(&req, Duration::from_secs(5)));
                    for response in futures::future::join_all(calls).await {
                        assert_eq!(response.status, 200);
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn sum_protos() -> ProtoSet {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sum.proto"),
        "syntax = \"proto3\";\npackage sum;\n\
         message SumRequest { int64 x = 1; int64 y = 2; }\n\
         message SumResponse { int64 sum = 1; }\n\
         service SumNumbersService { rpc SumNumbers(SumRequest) returns (SumResponse); }\n",
    )
    .unwrap();
    ProtoSet::compile(&[PathBuf::from(dir.path())], &["sum.proto".to_owned()]).unwrap()
}

fn grpc_benches(c: &mut Criterion) {
    let protos = sum_protos();
    let method = protos.method("sum.SumNumbersService/SumNumbers").unwrap();
    let mut reply_message = DynamicMessage::new(method.output());
    reply_message.set_field_by_name("sum", Value::I64(42));
    let encoded = reply_message.encode_to_vec();
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(encoded.len() as u32);
    framed.put_slice(&encoded);

    let rt = runtime();
    let addr = rt.block_on(grpc_server(framed.freeze()));
    let client = GrpcClient::new(&addr.to_string(), None).unwrap();
    let message = json_to_message(&method.input(), &json!({"x": 20, "y": 22})).unwrap();

    let mut group = c.benchmark_group("grpc");
    group.throughput(Throughput::Elements(1));
    group.bench_function("unary_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let response = client
                        .unary(&method, message.clone(), &[], Some(Duration::from_secs(5)))
                        .await;
                    assert_eq!(response.code, tonic::Code::Ok);
                }
                start.elapsed()
            })
        });
    });
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function("unary_16_concurrent", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let calls = (0..CONCURRENCY).map(|_| {
                        client.unary(&method, message.clone(), &[], Some(Duration::from_secs(5)))
                    });
                    for response in futures::future::join_all(calls).await {
                        assert_eq!(response.code, tonic::Code::Ok);
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();

    // What a flow does around each call: build the request from JSON, read the reply.
    let mut group = c.benchmark_group("grpc_json");
    group.bench_function("json_to_message", |b| {
        let v = json!({"x": 20, "y": 22});
        b.iter(|| json_to_message(&method.input(), &v).unwrap());
    });
    group.bench_function("message_to_json", |b| {
        b.iter(|| message_to_json(&reply_message));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = http_benches, grpc_benches
}
criterion_main!(benches);
