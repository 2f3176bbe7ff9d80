//! The Barrage agent: runs a share of a test plan and streams metric batches.
//!
//! # Layout
//! - [`address`]: the one parser of URLs and gRPC addresses, for the allow-list and
//!   every dialer.
//! - [`allow`]: `--allow-target` and the check of a plan's targets against it.
//! - [`clock`]: wall-clock instants shared with the coordinator, monotonic instants to
//!   sleep on, and the offset between two machines' clocks.
//! - [`engine`]: worker threads for one agent's share, and the per-second batches.
//! - [`executor`]: k6's executors over a share of iterations and VUs.
//! - [`program`]: the seam between executors and a flow language: how a VU runs one
//!   iteration.
//! - [`worker`]: what a worker thread's VUs share: the recorder and connection pools.
//! - [`flow`]: the YAML flow language, compiled per worker ([`program::Program`]'s first
//!   implementation).
//! - [`expr`]: CEL expressions and `{{ }}` templates used by flows.
//! - [`grpc`]: dynamic gRPC calls from user .proto files.
//! - [`http`]: the HTTP client on hyper connections.
//! - [`server`]: the control server of `barrage agent`: auth, allowed targets, one run at a time.

pub mod address;
pub mod allow;
pub mod clock;
pub mod engine;
pub mod executor;
pub mod expr;
pub mod flow;
pub mod grpc;
pub mod http;
pub mod js;
pub mod program;
pub mod server;
pub mod worker;
