//! The HTTP client: hyper 1 connections (HTTP/1.1 keep-alive, HTTP/2 by ALPN or prior
//! knowledge), TLS by rustls with the ring provider.
//!
//! One [`HttpClient`] is shared by every virtual user of a run: its pool keeps keep-alive
//! connections per host, so a closed loop of requests reuses them instead of dialing. A
//! request never fails with `Err`: transport failures come back as status 0 with an
//! error message and a k6 error code, so that flows can check them like k6 scripts do.
//!
//! # Layout
//! - [`HttpClient`] (`client.rs`): sends a request through the right pool and turns the
//!   outcome into an [`HttpResponse`]; [`HttpRequest`], [`HttpResponse`] and
//!   [`Timings`] are in `message.rs`.
//! - `h1.rs`: plain `http://` HTTP/1.1 connections, on the wire format of `codec.rs`
//!   (pure: encoding and parsing, no I/O).
//! - `timed.rs` and `tls.rs`: hyper's connector with set-up timings, rustls settings.
//! - [`redirect()`] and [`resolve_location`] (`redirect.rs`), [`CookieJar`]
//!   (`cookies.rs`): what a flow needs to follow redirects and keep cookies.
//! - [`debug`]: k6's `--http-debug` dumps of requests and responses.
//! - [`error_code`]: k6's error codes; `classify.rs` maps transport errors to them.

mod classify;
mod client;
mod codec;
mod cookies;
pub mod debug;
pub mod error_code;
mod h1;
mod message;
mod redirect;
mod series;
mod timed;
pub(crate) mod tls;

pub use client::{HttpClient, HttpClientOptions, HttpError};
pub use cookies::CookieJar;
pub use message::{HttpRequest, HttpResponse, Timings};
pub use redirect::{redirect, resolve_location};
pub use series::{HttpSeries, failure_cause};
