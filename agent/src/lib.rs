//! The Barrage agent: runs a share of a test plan and streams metric batches.
//!
//! # Layout
//! - [`engine`]: worker threads for one agent's share, and the per-second batches.
//! - [`executor`]: k6's executors over a share of iterations and VUs.
//! - [`flow`]: flows compiled per worker and run once per iteration.
//! - [`expr`]: CEL expressions and `{{ }}` templates used by flows.
//! - [`grpc`]: dynamic gRPC calls from user .proto files.
//! - [`http`]: the HTTP client on hyper connections.
//! - [`server`]: the control server of `barrage agent`: auth, allowed targets, one run at a time.

pub mod engine;
pub mod executor;
pub mod expr;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod server;
