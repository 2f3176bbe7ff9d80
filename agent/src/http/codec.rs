//! The HTTP/1.1 wire format, without I/O: request encoding, response head parsing
//! (httparse) with its framing headers, and `Transfer-Encoding: chunked` decoding.
//!
//! Nothing here touches a socket, tokio or the clock: [`super::h1`] reads and writes
//! the bytes and calls these functions on its buffers, so they are tested on byte
//! strings alone.
//!
//! Framing follows RFC 9112: HEAD/204/304 and 1xx responses have no body,
//! `Transfer-Encoding: chunked` wins over `Content-Length`, and a response with
//! neither is delimited by the end of the connection.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

/// Most response header lines accepted.
const MAX_HEADERS: usize = 128;
/// Largest response head (status line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_SIZE_LINE: usize = 4096;

/// Bytes that are not valid HTTP/1.x; the text says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request target (origin form) for `uri`: its path and query, `/` for an empty
/// path (`http://h?q` asks for `/?q`, as hyper sends it).
fn request_target(uri: &Uri) -> Cow<'_, str> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    if target.is_empty() {
        Cow::Borrowed("/")
    } else if target.starts_with('?') {
        Cow::Owned(format!("/{target}"))
    } else {
        Cow::Borrowed(target)
    }
}

/// The request's bytes: request line, headers (`Host` and `Content-Length` added when
/// missing) and body, ready to be written with one system call.
pub(crate) fn encode_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let target = request_target(uri);
    let mut out = Vec::with_capacity(64 + target.len() + 32 * headers.len() + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(http::header::HOST)
        && let Some(a) = uri.authority()
    {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framed = headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING);
    // A body always has a length; so do methods that are expected to carry one.
    if !framed
        && (!body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH))
    {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Whether request `headers` ask for the connection to be closed after the exchange.
pub(crate) fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"))
}

/// Whether the comma-separated `value` holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A response's status line and headers, with its framing headers already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    /// Bytes of the head, blank line included: the body starts after them.
    pub len: usize,
    /// The status code of the status line.
    pub status: StatusCode,
    /// HTTP/1.0, or HTTP/1.1 for `HTTP/1.1`.
    pub version: Version,
    /// The last `Transfer-Encoding` ends in `chunked`.
    chunked: bool,
    /// `Content-Length` (all of its values agree), or why it is unusable.
    length: Result<Option<u64>, Malformed>,
    /// `Connection` carries `close`.
    close: bool,
    /// `Connection` carries `keep-alive` (for HTTP/1.0).
    keep_alive: bool,
    /// All headers when the caller wanted them; otherwise only a redirect's `Location`
    /// and `Set-Cookie`.
    pub headers: HeaderMap,
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// There is none (HEAD, 1xx, 204, 304).
    Empty,
    /// `Transfer-Encoding: chunked`: see [`ChunkedDecoder`].
    Chunked,
    /// `Content-Length` bytes.
    Length(u64),
    /// Everything up to the end of the connection.
    UntilClose,
}

impl ResponseHead {
    /// An interim (1xx) response that a final one follows; 101 is final (the connection
    /// then speaks another protocol).
    pub(crate) fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }

    /// How the body that follows this head, in answer to `method`, is delimited. An
    /// unusable `Content-Length` is an error unless the body is chunked.
    pub(crate) fn body_framing(&self, method: &Method) -> Result<BodyFraming, Malformed> {
        let length = if self.chunked {
            None
        } else {
            self.length.clone()?
        };
        let no_body = *method == Method::HEAD
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
            || self.status.is_informational();
        Ok(if no_body {
            BodyFraming::Empty
        } else if self.chunked {
            BodyFraming::Chunked
        } else if let Some(len) = length {
            BodyFraming::Length(len)
        } else {
            BodyFraming::UntilClose
        })
    }

    /// Whether the connection may carry another request after this response (as far
    /// as the head tells: a body read to EOF or bytes beyond the response also end it).
    pub(crate) fn allows_reuse(&self) -> bool {
        // After 101 the connection speaks another protocol: never reuse it for HTTP/1.1.
        self.status != StatusCode::SWITCHING_PROTOCOLS
            && match self.version {
                Version::HTTP_11 => !self.close,
                _ => self.keep_alive,
            }
    }
}

/// Parses a complete response head at the start of `buf`; `None` while incomplete.
/// The framing headers are read in place; the header map is built only when
/// `want_headers` (most flows read only the status, and a map costs several
/// allocations per response), except for a redirect's `Location` and `Set-Cookie`.
pub(crate) fn parse_response_head(
    buf: &[u8],
    want_headers: bool,
) -> Result<Option<ResponseHead>, Malformed> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Malformed(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Malformed(format!("invalid status code {code}")))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut head = ResponseHead {
        len,
        status,
        version,
        chunked: false,
        length: Ok(None),
        close: false,
        keep_alive: false,
        headers: HeaderMap::new(),
    };
    if want_headers {
        head.headers.reserve(resp.headers.len());
    }
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if let Ok(found) = &head.length {
                head.length = merge_content_length(*found, h.value);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close |= has_token(h.value, b"close");
            head.keep_alive |= has_token(h.value, b"keep-alive");
        }
        // Always kept: a redirect's Location (the flow follows it) and Set-Cookie (the
        // VU's cookie jar stores it).
        let kept = ((300..400).contains(&code) && h.name.eq_ignore_ascii_case("location"))
            || h.name.eq_ignore_ascii_case("set-cookie");
        if want_headers || kept {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| Malformed(format!("invalid header name {:?}", h.name)))?;
            let value = HeaderValue::from_bytes(h.value)
                .map_err(|_| Malformed(format!("invalid value for header {}", h.name)))?;
            head.headers.append(name, value);
        }
    }
    Ok(Some(head))
}

/// Adds one `Content-Length` line's values to what was `found` before: every value
/// must be a number, and all must agree.
fn merge_content_length(found: Option<u64>, value: &[u8]) -> Result<Option<u64>, Malformed> {
    let mut found = found;
    for part in value.split(|&b| b == b',') {
        let text = std::str::from_utf8(part.trim_ascii()).unwrap_or("");
        let n: u64 = text
            .parse()
            .map_err(|_| Malformed(format!("invalid content-length {text:?}")))?;
        if found.is_some_and(|f| f != n) {
            return Err(Malformed("conflicting content-length values".into()));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Incremental `Transfer-Encoding: chunked` decoder: fed the bytes after the head as
/// they arrive, it keeps its place between calls.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    /// Data bytes left in the current chunk, then its CRLF.
    remaining: u64,
    in_chunk: bool,
    /// The last chunk was seen; trailers follow.
    trailers: bool,
}

impl ChunkedDecoder {
    /// Moves decoded data from the front of `buf` to `out`; true once the message is
    /// complete, what follows it left in `buf`.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> Result<bool, Malformed> {
        loop {
            if self.trailers {
                // Trailer lines up to an empty line (ignored).
                let Some(end) = find_crlf(buf) else {
                    return Ok(false);
                };
                let line = buf.split_to(end + 2);
                if line.len() == 2 {
                    return Ok(true);
                }
                continue;
            }
            if self.in_chunk {
                if self.remaining > 0 {
                    let take = (self.remaining.min(buf.len() as u64)) as usize;
                    if take == 0 {
                        return Ok(false);
                    }
                    out.extend_from_slice(&buf.split_to(take));
                    self.remaining -= take as u64;
                    continue;
                }
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Malformed("chunk not followed by CRLF".into()));
                }
                let _ = buf.split_to(2);
                self.in_chunk = false;
                continue;
            }
            // The line is refused for its length alone, whether it arrived whole or in
            // pieces: a CR at the end of the buffer may start its CRLF.
            let Some(end) = find_crlf(buf) else {
                let at_least = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                if at_least > MAX_CHUNK_SIZE_LINE {
                    return Err(Malformed("chunk size line too long".into()));
                }
                return Ok(false);
            };
            if end > MAX_CHUNK_SIZE_LINE {
                return Err(Malformed("chunk size line too long".into()));
            }
            let line = buf.split_to(end + 2);
            let size_text = line[..end]
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    Malformed(format!(
                        "invalid chunk size {:?}",
                        String::from_utf8_lossy(size_text)
                    ))
                })?;
            if size == 0 {
                self.trailers = true;
            } else {
                self.remaining = size;
                self.in_chunk = true;
            }
        }
    }
}

/// Where the first CRLF in `buf` starts.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], piece: usize) -> (bool, Vec<u8>) {
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut done = false;
        for part in input.chunks(piece) {
            buf.extend_from_slice(part);
            done = d.decode(&mut buf, &mut out).unwrap_or(false);
        }
        (done, out)
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 2, 3, 7, wire.len()] {
            let (done, out) = decode_all(wire, piece);
            assert!(done, "piece {piece}");
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "piece {piece}");
        }
    }

    #[test]
    fn bad_chunk_size_is_an_error() {
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"zz\r\nabc\r\n"[..]);
        assert!(d.decode(&mut buf, &mut Vec::new()).is_err());
    }

    #[test]
    fn request_bytes_carry_host_and_length() {
        let uri: Uri = "http://example.test:8080/a?b=c".parse().unwrap_or_default();
        let bytes = encode_request(&Method::POST, &uri, &HeaderMap::new(), b"hello");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "POST /a?b=c HTTP/1.1\r\nhost: example.test:8080\r\ncontent-length: 5\r\n\r\nhello"
        );
        let get = encode_request(
            &Method::GET,
            &"http://h/".parse().unwrap_or_default(),
            &HeaderMap::new(),
            b"",
        );
        assert_eq!(
            String::from_utf8_lossy(&get),
            "GET / HTTP/1.1\r\nhost: h\r\n\r\n"
        );
        // An empty path before a query is still "/" (was: "GET ?q=1 HTTP/1.1").
        let query_only = encode_request(
            &Method::GET,
            &"http://h?q=1".parse().unwrap_or_default(),
            &HeaderMap::new(),
            b"",
        );
        assert!(query_only.starts_with(b"GET /?q=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn long_chunk_size_lines_are_refused_however_they_arrive() {
        let line = |len: usize| format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(len - 2)).into_bytes();
        for piece in [1, 7, 4096, 100_000] {
            // The longest line accepted, and one byte more (was: accepted when it
            // arrived whole, refused when in pieces).
            assert_eq!(
                decode_all(&line(MAX_CHUNK_SIZE_LINE), piece),
                (true, b"x".to_vec())
            );
            let mut d = ChunkedDecoder::default();
            let mut buf = BytesMut::new();
            let refused = line(MAX_CHUNK_SIZE_LINE + 1)
                .chunks(piece)
                .map(|part| {
                    buf.extend_from_slice(part);
                    d.decode(&mut buf, &mut Vec::new())
                })
                .any(|r| r.is_err());
            assert!(refused, "piece {piece}");
        }
    }

    #[test]
    fn conflicting_content_lengths_are_refused() {
        let head = |wire: &[u8]| parse_response_head(wire, false).ok().flatten();
        let conflict = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(conflict.is_some_and(|h| h.length.is_err()));
        let same = head(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
        assert_eq!(same.and_then(|h| h.length.ok().flatten()), Some(5));
        let bad = head(b"HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n");
        assert!(bad.is_some_and(|h| h.length.is_err()));
    }

    #[test]
    fn framing_headers_are_read_without_building_the_map() {
        let wire = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nTransfer-Encoding: gzip, chunked\r\nX-A: 1\r\n\r\nrest";
        let Ok(Some(lean)) = parse_response_head(wire, false) else {
            panic!("head not parsed");
        };
        assert_eq!(lean.len, wire.len() - 4);
        assert!(lean.chunked && lean.close && lean.keep_alive);
        assert!(lean.headers.is_empty());
        let Ok(Some(full)) = parse_response_head(wire, true) else {
            panic!("head not parsed");
        };
        assert_eq!(full.headers.len(), 3);
        assert_eq!(
            full.headers.get("x-a").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        // A later Transfer-Encoding line that does not end in chunked wins.
        let Ok(Some(not)) = parse_response_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            false,
        ) else {
            panic!("head not parsed");
        };
        assert!(!not.chunked);
        assert!(matches!(parse_response_head(b"", false), Ok(None)));
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nX-A", false),
            Ok(None)
        ));
        assert!(parse_response_head(b"HTTP/9 200\r\n\r\n", false).is_err());
    }
}
