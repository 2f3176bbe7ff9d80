//! k6 error codes (<https://grafana.com/docs/k6/latest/javascript-api/error-codes/>)
//! that the client reports in [`HttpResponse::error_code`](super::HttpResponse::error_code).

/// A generic error that isn't any of the others.
pub const GENERIC: u32 = 1000;
/// An invalid URL (no host, unsupported scheme).
pub const INVALID_URL: u32 = 1020;
/// The request did not complete within its timeout.
pub const REQUEST_TIMEOUT: u32 = 1050;
/// A generic DNS error.
pub const DNS: u32 = 1100;
/// No IP address found for the host.
pub const DNS_NO_SUCH_HOST: u32 = 1101;
/// A connection the agent's `--allow-target` list refused; nothing was sent. k6 gives
/// this code to a host its `blockHostnames` option blocks (and 1110 to an address
/// `blacklistIPs` blocks): both are the load generator's own policy, not the target's.
pub const BLOCKED_HOSTNAME: u32 = 1111;
/// A generic TCP error.
pub const TCP: u32 = 1200;
/// A broken pipe on write: the peer has likely closed the connection.
pub const TCP_BROKEN_PIPE: u32 = 1201;
/// A generic TCP dial error.
pub const TCP_DIAL: u32 = 1210;
/// The TCP dial timed out.
pub const TCP_DIAL_TIMEOUT: u32 = 1211;
/// The TCP dial was refused.
pub const TCP_DIAL_REFUSED: u32 = 1212;
/// Connection reset by peer.
pub const TCP_RESET: u32 = 1220;
/// A generic TLS error.
pub const TLS: u32 = 1300;
/// The server certificate was issued by an unknown authority.
pub const TLS_UNKNOWN_AUTHORITY: u32 = 1310;
/// The server certificate does not match the host name.
pub const TLS_HOSTNAME: u32 = 1311;
/// HTTP/2 GOAWAY received; `+ 1 + h2 error code` for the known codes.
pub const HTTP2_GOAWAY: u32 = 1610;
/// HTTP/2 stream reset; `+ 1 + h2 error code` for the known codes.
pub const HTTP2_STREAM: u32 = 1630;
/// HTTP/2 connection error; `+ 1 + h2 error code` for the known codes.
pub const HTTP2_CONNECTION: u32 = 1650;
/// Responses with status >= 400 carry `1000 + status` (1404, 1503, ...), as in k6.
pub const HTTP_STATUS_BASE: u32 = 1000;
