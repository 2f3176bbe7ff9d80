//! # Layout
//! Dev-only helpers that Barrage's tests (agent, coordinator, sumflow) used to write
//! each for itself. Free of barrage crates, so that sumflow may use it too.
//!
//! - [`pki`]: a throw-away PKI made with rcgen: a CA, a server leaf for `localhost`
//!   and `127.0.0.1`, and a client certificate for mutual TLS ([`TestPki`]).
//! - [`net`]: loopback listeners ([`bind`], [`unused_addr`]), an accept stream that
//!   counts connections ([`Incoming`]) and a spawned server that stops with a
//!   `CancellationToken` when dropped ([`TestServer`]).
//! - [`wait`]: [`wait_until`], which polls an async condition until a deadline and
//!   otherwise fails the test naming what it waited for.

pub mod net;
pub mod pki;
pub mod wait;

pub use net::{ConnectionCount, Incoming, TestServer, bind, unused_addr};
pub use pki::TestPki;
pub use wait::{Probe, wait_until};
