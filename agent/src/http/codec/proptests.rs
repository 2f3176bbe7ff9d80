//! Property tests of the HTTP/1.1 codec: the response-head parser and the chunked
//! decoder never panic and do not depend on how the bytes arrive, chunked bodies
//! round-trip, and encoded requests parse back (httparse) into what was encoded.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

/// `input` cut into consecutive pieces of the given sizes (cycled), as reads would
/// deliver it.
fn pieces<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

/// Piece sizes for [`pieces`].
fn piece_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..48, 1..12)
}

/// Overwrites a few bytes of `input`: near-valid messages reach deeper states than
/// random bytes do.
fn mutate(mut input: Vec<u8>, edits: &[(Index, u8)]) -> Vec<u8> {
    if !input.is_empty() {
        for (at, byte) in edits {
            let i = at.index(input.len());
            input[i] = *byte;
        }
    }
    input
}

/// What the reader loop of `h1` sees: the buffer grows piece by piece and the parser
/// is asked after each, until it answers something other than "incomplete".
fn parse_head_fed(
    input: &[u8],
    sizes: &[usize],
    want_headers: bool,
) -> Result<Option<ResponseHead>, Malformed> {
    let mut buf = Vec::new();
    for piece in pieces(input, sizes) {
        buf.extend_from_slice(piece);
        match parse_response_head(&buf, want_headers) {
            Ok(None) => {}
            answer => return answer,
        }
    }
    Ok(None)
}

/// Decodes `input` fed in `sizes` pieces, stopping at completion or the first error:
/// the outcome, the data decoded, and what the decoder left (the bytes still in the
/// buffer, then those not fed yet).
fn decode_fed(input: &[u8], sizes: &[usize]) -> (Result<bool, Malformed>, Vec<u8>, Vec<u8>) {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for piece in pieces(input, sizes) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        match decoder.decode(&mut buf, &mut out) {
            Ok(false) => {}
            answer => {
                buf.extend_from_slice(&input[fed..]);
                return (answer, out, buf.to_vec());
            }
        }
    }
    (Ok(false), out, buf.to_vec())
}

fn decode_whole(input: &[u8]) -> (Result<bool, Malformed>, Vec<u8>, Vec<u8>) {
    decode_fed(input, &[input.len().max(1)])
}

/// One chunk of a chunked body: its data, an extension (`;...`) of some length, upper
/// or lower case hex, and leading zeros on the size.
#[derive(Debug, Clone)]
struct Chunk {
    data: Vec<u8>,
    extension: String,
    upper_hex: bool,
    zeros: usize,
}

impl Chunk {
    /// The size line, without its CRLF.
    fn size_line(&self) -> String {
        let zeros = "0".repeat(self.zeros);
        let len = self.data.len();
        let ext = &self.extension;
        if self.upper_hex {
            format!("{zeros}{len:X}{ext}")
        } else {
            format!("{zeros}{len:x}{ext}")
        }
    }
}

fn chunk() -> impl Strategy<Value = Chunk> {
    let extension = prop_oneof![
        8 => "(;[a-z]{1,5}(=[a-z0-9]{0,5})?){0,2}",
        // Around the longest size line the decoder accepts.
        1 => (4080usize..4110).prop_map(|n| format!(";x={}", "y".repeat(n))),
    ];
    (
        prop::collection::vec(any::<u8>(), 1..64),
        extension,
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(data, extension, upper_hex, zeros)| Chunk {
            data,
            extension,
            upper_hex,
            zeros,
        })
}

/// The chunked encoding of `chunks`, then the last chunk and `trailers`.
fn encode_chunked(chunks: &[Chunk], trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(c.size_line().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&c.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A response head (status line, headers, blank line) with headers that matter to
/// framing among others, and how many header lines it has.
fn response_head() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let name = prop_oneof![
        Just("Content-Length".to_string()),
        Just("transfer-encoding".to_string()),
        Just("Connection".to_string()),
        Just("Location".to_string()),
        Just("Set-Cookie".to_string()),
        "[A-Za-z][A-Za-z0-9-]{0,10}",
    ];
    let value = prop_oneof![
        "[0-9]{1,4}",
        "[0-9]{1,3}, ?[0-9]{1,3}",
        Just("chunked".to_string()),
        Just("gzip, chunked".to_string()),
        Just("close".to_string()),
        Just("keep-alive, Close".to_string()),
        "[!-~]([ -~]{0,20}[!-~])?",
    ];
    (
        prop_oneof![Just("HTTP/1.0"), Just("HTTP/1.1")],
        100u16..600,
        "[A-Za-z ]{0,12}",
        prop::collection::vec((name, value), 0..8),
    )
        .prop_map(|(version, code, reason, headers)| {
            let mut head = format!("{version} {code} {reason}\r\n");
            for (n, v) in &headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            (head.into_bytes(), headers.len())
        })
}

/// A field value as `HeaderValue` accepts it and HTTP carries it: visible ASCII and
/// obs-text, inner spaces and tabs, none at the ends (the parser drops those).
fn field_value() -> impl Strategy<Value = HeaderValue> {
    prop::collection::vec(
        prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff, Just(b' '), Just(b'\t')],
        0..24,
    )
    .prop_filter_map("not a header value", |bytes| {
        HeaderValue::from_bytes(bytes.trim_ascii()).ok()
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        "[A-Z]{1,10}".prop_filter_map("not a method", |m| Method::from_bytes(m.as_bytes()).ok()),
    ]
}

/// An absolute `http://` URI: host, maybe a port, a path (maybe empty) and maybe a
/// query.
fn uri() -> impl Strategy<Value = Uri> {
    (
        "[a-z][a-z0-9-]{0,10}(\\.[a-z]{1,5})?",
        prop::option::of(1u16..),
        "(/[A-Za-z0-9._~!$&'()*+,;=:@-]{0,8}){0,4}",
        prop::option::of("[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,16}"),
    )
        .prop_filter_map("not a URI", |(host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("http://{host}{port}{path}{query}").parse().ok()
        })
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        Just("host".to_string()),
        Just("content-type".to_string()),
        Just("content-length".to_string()),
        Just("transfer-encoding".to_string()),
        Just("connection".to_string()),
        "[a-z][a-z0-9-]{0,12}",
    ];
    prop::collection::vec((name, field_value()), 0..8).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            if let Ok(n) = HeaderName::from_bytes(n.as_bytes()) {
                map.append(n, v);
            }
        }
        map
    })
}

proptest! {
    #[test]
    fn head_parser_never_panics_and_ignores_how_bytes_arrive(
        input in prop::collection::vec(any::<u8>(), 0..512),
        sizes in piece_sizes(),
        want_headers in any::<bool>(),
    ) {
        let whole = parse_response_head(&input, want_headers);
        prop_assert_eq!(parse_head_fed(&input, &sizes, want_headers), whole);
    }

    #[test]
    fn near_valid_heads_parse_the_same_however_split(
        (head, lines) in response_head(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..3),
        sizes in piece_sizes(),
    ) {
        let mut wire = head.clone();
        wire.extend_from_slice(&tail);
        if edits.is_empty() {
            // Unedited, the head is complete and its length is the head's.
            let full = parse_response_head(&wire, true);
            prop_assert!(
                matches!(&full, Ok(Some(h)) if h.len == head.len() && h.headers.len() == lines),
                "{:?}", full
            );
            // The framing read in place does not depend on building the map.
            let lean = parse_response_head(&wire, false);
            let framing = |r: &Result<Option<ResponseHead>, Malformed>| {
                r.as_ref().ok().and_then(Option::as_ref).map(|h| {
                    (h.len, h.status, h.version, h.chunked, h.length.clone(), h.close, h.keep_alive)
                })
            };
            prop_assert_eq!(framing(&lean), framing(&full));
        }
        let wire = mutate(wire, &edits);
        for want_headers in [false, true] {
            let whole = parse_response_head(&wire, want_headers);
            prop_assert_eq!(parse_head_fed(&wire, &sizes, want_headers), whole);
        }
    }

    #[test]
    fn chunked_decoder_never_panics_and_ignores_how_bytes_arrive(
        input in prop::collection::vec(any::<u8>(), 0..512),
        sizes in piece_sizes(),
    ) {
        let (whole, whole_out, whole_rest) = decode_whole(&input);
        let (fed, fed_out, fed_rest) = decode_fed(&input, &sizes);
        prop_assert_eq!(&fed, &whole);
        prop_assert_eq!(fed_out, whole_out);
        if whole.is_ok() {
            prop_assert_eq!(fed_rest, whole_rest);
        }
    }

    #[test]
    fn chunked_bodies_round_trip(
        chunks in prop::collection::vec(chunk(), 0..6),
        trailers in prop::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,12}"), 0..3),
        next in prop::collection::vec(any::<u8>(), 0..32),
        sizes in piece_sizes(),
    ) {
        // A size line over the limit is refused, the chunks before it decoded.
        let too_long = chunks
            .iter()
            .position(|c| c.size_line().len() > MAX_CHUNK_SIZE_LINE);
        let body: Vec<u8> = chunks[..too_long.unwrap_or(chunks.len())]
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect();
        let mut wire = encode_chunked(&chunks, &trailers);
        // Whatever follows (a pipelined response) is left where it is.
        wire.extend_from_slice(&next);
        let whole = decode_whole(&wire);
        let fed = decode_fed(&wire, &sizes);
        if too_long.is_some() {
            let refused = Err(Malformed("chunk size line too long".into()));
            prop_assert_eq!((&whole.0, &whole.1), (&refused, &body));
            prop_assert_eq!((&fed.0, &fed.1), (&refused, &body));
        } else {
            let expected = (Ok(true), body, next);
            prop_assert_eq!(whole, expected.clone());
            prop_assert_eq!(fed, expected);
        }
    }

    #[test]
    fn near_valid_chunked_bodies_decode_the_same_however_split(
        chunks in prop::collection::vec(chunk(), 0..4),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..3),
        sizes in piece_sizes(),
    ) {
        let wire = mutate(encode_chunked(&chunks, &[]), &edits);
        let (whole, whole_out, _) = decode_whole(&wire);
        let (fed, fed_out, _) = decode_fed(&wire, &sizes);
        prop_assert_eq!(fed, whole);
        prop_assert_eq!(fed_out, whole_out);
    }

    #[test]
    fn encoded_requests_parse_back(
        method in method(),
        uri in uri(),
        headers in headers(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let wire = encode_request(&method, &uri, &headers, &body);
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut slots);
        let status = parsed.parse(&wire);
        let Ok(httparse::Status::Complete(head_len)) = status else {
            return Err(TestCaseError::fail(format!(
                "{status:?} for {:?}", String::from_utf8_lossy(&wire)
            )));
        };
        prop_assert_eq!(parsed.method, Some(method.as_str()));
        // The origin form of the URI: its path ("/" when empty) and query.
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let target = format!("{}{query}", uri.path());
        prop_assert_eq!(parsed.path, Some(target.as_str()));
        prop_assert_eq!(parsed.version, Some(1));
        prop_assert_eq!(&wire[head_len..], &body[..]);

        let got: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect();
        let mut want: Vec<(String, Vec<u8>)> = Vec::new();
        if !headers.contains_key(http::header::HOST) {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            want.push(("host".into(), authority.as_bytes().to_vec()));
        }
        for (name, value) in &headers {
            want.push((name.as_str().into(), value.as_bytes().to_vec()));
        }
        let framed = headers.contains_key(http::header::CONTENT_LENGTH)
            || headers.contains_key(http::header::TRANSFER_ENCODING);
        let carries_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        if !framed && (carries_body || !body.is_empty()) {
            want.push(("content-length".into(), body.len().to_string().into_bytes()));
        }
        prop_assert_eq!(got, want);
    }
}
