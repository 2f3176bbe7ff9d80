//! The Barrage agent: runs a segment of a test plan and streams metric batches.
//!
//! # Layout
//! - [`expr`]: CEL expressions and `{{ }}` templates used by flows.
//! - [`grpc`]: dynamic gRPC calls from user .proto files.
//! - [`http`]: the HTTP client on hyper connections.

pub mod expr;
pub mod grpc;
pub mod http;
