//! Following redirects: which responses are followed and how the next request is
//! built from the last one (Go's rules, as k6 follows them), and resolving a
//! `Location` value against the URI it answered.

use bytes::Bytes;
use http::{Method, Uri};

use super::{HttpRequest, HttpResponse};

/// The request that follows a redirect `resp` to `req`, when it is one to follow:
/// 301, 302, 303, 307 or 308 with a usable `Location` (Go's rules, as k6 follows them).
/// 301–303 turn any method but HEAD into GET without a body; 307 and 308 repeat the
/// method and body. Credentials and cookies are not carried to another host. `Referer`
/// becomes the previous URL (not from https to http), unless `user_referer`: the
/// first request carried one of its own.
pub fn redirect(req: &HttpRequest, resp: &HttpResponse, user_referer: bool) -> Option<HttpRequest> {
    let keep_body = match resp.status {
        301..=303 => false,
        307 | 308 => true,
        _ => return None,
    };
    let location = resp.headers.get(http::header::LOCATION)?.to_str().ok()?;
    let uri = resolve_location(&req.uri, location)?;
    let method = if keep_body || req.method == Method::GET || req.method == Method::HEAD {
        req.method.clone()
    } else {
        Method::GET
    };
    let mut headers = req.headers.clone();
    let host_of = |u: &Uri| (u.host().map(str::to_ascii_lowercase), u.port_u16());
    if host_of(&uri) != host_of(&req.uri) || uri.scheme() != req.uri.scheme() {
        headers.remove(http::header::HOST);
    }
    if uri.host().map(str::to_ascii_lowercase) != req.uri.host().map(str::to_ascii_lowercase) {
        for name in [
            http::header::AUTHORIZATION,
            http::header::WWW_AUTHENTICATE,
            http::header::COOKIE,
            http::header::PROXY_AUTHORIZATION,
        ] {
            headers.remove(name);
        }
        headers.remove("cookie2");
    }
    let body = if keep_body {
        req.body.clone()
    } else {
        // Go keeps Content-Type; only the framing of the dropped body goes.
        headers.remove(http::header::CONTENT_LENGTH);
        headers.remove(http::header::TRANSFER_ENCODING);
        Bytes::new()
    };
    if !user_referer {
        let downgrade = req.uri.scheme_str() == Some("https") && uri.scheme_str() == Some("http");
        match http::HeaderValue::from_str(&req.uri.to_string()) {
            Ok(v) if !downgrade => {
                headers.insert(http::header::REFERER, v);
            }
            _ => {
                headers.remove(http::header::REFERER);
            }
        }
    }
    Some(HttpRequest {
        method,
        uri,
        headers,
        body,
        want_headers: req.want_headers,
    })
}

/// Resolves a `Location` value against the URI it answered (RFC 3986 section 5.2,
/// the fragment dropped); `None` when it is empty, not http(s) or not a valid URI.
pub fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    let loc = location.trim();
    let loc = loc.split('#').next().unwrap_or("");
    if loc.is_empty() {
        return None;
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let has_scheme = loc.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let text = if has_scheme {
        loc.to_string()
    } else if loc.starts_with("//") {
        format!("{scheme}:{loc}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{}", remove_dot_segments(loc))
    } else if loc.starts_with('?') {
        format!("{scheme}://{authority}{}{loc}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let merged = format!("/{}{loc}", dir.trim_start_matches('/'));
        format!("{scheme}://{authority}{}", remove_dot_segments(&merged))
    };
    let uri: Uri = text.parse().ok()?;
    (matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()).then_some(uri)
}

/// Removes `.` and `..` segments from an absolute path (the query kept as is).
fn remove_dot_segments(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderMap;

    use super::*;
    use crate::http::Timings;

    #[test]
    fn locations_resolve_like_rfc_3986() {
        let base: Uri = "http://a.test:8080/b/c/d?q=1".parse().unwrap_or_default();
        let cases = [
            ("http://x.test/y", "http://x.test/y"),
            ("https://x.test", "https://x.test/"),
            ("//x.test/y?z", "http://x.test/y?z"),
            ("/g", "http://a.test:8080/g"),
            ("g", "http://a.test:8080/b/c/g"),
            ("./g/", "http://a.test:8080/b/c/g/"),
            ("../g", "http://a.test:8080/b/g"),
            ("../../../g", "http://a.test:8080/g"),
            ("/a/./b/../c?x=/../y", "http://a.test:8080/a/c?x=/../y"),
            ("?y", "http://a.test:8080/b/c/d?y"),
            ("g#frag", "http://a.test:8080/b/c/g"),
            ("  /spaces-trimmed  ", "http://a.test:8080/spaces-trimmed"),
        ];
        for (loc, want) in cases {
            let got = resolve_location(&base, loc).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(want), "Location {loc:?}");
        }
        for bad in ["", "#only", "ftp://x.test/", "mailto:a@b", "/with space"] {
            assert!(resolve_location(&base, bad).is_none(), "Location {bad:?}");
        }
    }

    fn response(status: u16, location: &str) -> HttpResponse {
        let mut headers = HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(location) {
            headers.insert(http::header::LOCATION, v);
        }
        HttpResponse {
            status,
            headers,
            body: Bytes::new(),
            error: None,
            error_code: 0,
            proto: "HTTP/1.1",
            timings: Timings::default(),
            duration: Duration::ZERO,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    #[test]
    fn redirect_rules_follow_go() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, http::HeaderValue::from_static("a.test"));
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_static("t"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let post = HttpRequest {
            method: Method::POST,
            uri: "http://a.test/p".parse().unwrap_or_default(),
            headers,
            body: Bytes::from_static(b"x"),
            want_headers: false,
        };
        // 302 on the same host: GET, no body, no content headers; the token stays.
        let next = redirect(&post, &response(302, "/q"), false);
        let next = next.as_ref();
        assert_eq!(next.map(|r| r.method.clone()), Some(Method::GET));
        assert!(next.is_some_and(|r| r.body.is_empty()));
        // Go keeps Content-Type and sets Referer to the previous URL.
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::CONTENT_TYPE)));
        assert_eq!(
            next.and_then(|r| r.headers.get(http::header::REFERER)),
            Some(&http::HeaderValue::from_static("http://a.test/p"))
        );
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::AUTHORIZATION)));
        assert!(next.is_some_and(|r| r.headers.contains_key(http::header::HOST)));
        // 308 to another host: POST and body again, Host and the token dropped.
        let next = redirect(&post, &response(308, "http://b.test/r"), false);
        let next = next.as_ref();
        assert_eq!(next.map(|r| r.method.clone()), Some(Method::POST));
        assert_eq!(next.map(|r| r.body.clone()), Some(Bytes::from_static(b"x")));
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::AUTHORIZATION)));
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::HOST)));
        // Not redirects: other statuses, a 3xx without (usable) Location.
        assert!(redirect(&post, &response(200, "/q"), false).is_none());
        assert!(redirect(&post, &response(304, "/q"), false).is_none());
        assert!(redirect(&post, &response(302, ""), false).is_none());
        // The user's own Referer stays; none is sent from https to http.
        let mut own = post.clone();
        own.headers.insert(
            http::header::REFERER,
            http::HeaderValue::from_static("mine"),
        );
        let next = redirect(&own, &response(302, "/q"), true);
        assert_eq!(
            next.and_then(|r| r.headers.get(http::header::REFERER).cloned()),
            Some(http::HeaderValue::from_static("mine"))
        );
        let secure = HttpRequest {
            uri: "https://a.test/p".parse().unwrap_or_default(),
            ..post.clone()
        };
        let next = redirect(&secure, &response(302, "http://a.test/q"), false);
        assert!(next.is_some_and(|r| !r.headers.contains_key(http::header::REFERER)));
    }
}

#[cfg(test)]
mod proptests {
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::http::Timings;

    /// Any text: arbitrary Unicode, printable ASCII, or made of what relative
    /// references are made of.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~]{0,40}",
            "[ ./?#:@%a-z0-9-]{0,24}",
            "(\\.\\.?/|/|[a-z]{1,3}/?){0,8}(\\?[a-z=&./]{0,8})?",
        ]
    }

    /// A base URI: arbitrary text that parses (often not absolute), or a plausible
    /// absolute one.
    fn base() -> impl Strategy<Value = Uri> {
        prop_oneof![
            text().prop_map(|t| t.parse().unwrap_or_default()),
            absolute_base(),
        ]
    }

    /// An absolute http(s) URI, as the request a redirect answers always has.
    fn absolute_base() -> impl Strategy<Value = Uri> {
        "https?://[a-z]{1,5}(:[0-9]{1,5})?(/[a-z.]{0,3}){0,4}(\\?[a-z=]{0,5})?"
            .prop_filter_map("not a URI", |t| t.parse().ok())
    }

    /// An absolute http(s) URL without dot segments, its scheme and host in any case,
    /// maybe with a port, userinfo, query, fragment and surrounding spaces; and the
    /// URI it names (the fragment and spaces dropped).
    fn absolute_url() -> impl Strategy<Value = (String, Uri)> {
        let segment = "[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]{0,8}";
        (
            "(?i)https?",
            prop::option::of("[a-z0-9]{1,6}(:[a-z0-9]{0,6})?@"),
            prop_oneof![
                "[A-Za-z0-9][A-Za-z0-9-]{0,10}(\\.[A-Za-z]{1,5}){0,2}",
                Just("127.0.0.1".to_string()),
                Just("[::1]".to_string()),
            ],
            prop::option::of(0u16..),
            prop::collection::vec(segment, 0..4),
            any::<bool>(),
            prop::option::of("[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,12}"),
            prop::option::of("[ -~]{0,8}"),
            " {0,2}",
        )
            .prop_filter_map(
                "not a URI",
                |(scheme, user, host, port, segments, slash, query, fragment, pad)| {
                    let mut url = format!("{scheme}://{}{host}", user.unwrap_or_default());
                    if let Some(p) = port {
                        url.push_str(&format!(":{p}"));
                    }
                    for s in &segments {
                        url.push('/');
                        url.push_str(s);
                    }
                    if slash {
                        url.push('/');
                    }
                    if let Some(q) = query {
                        url.push('?');
                        url.push_str(&q);
                    }
                    let uri: Uri = url.parse().ok()?;
                    if let Some(f) = fragment {
                        url.push('#');
                        url.push_str(&f);
                    }
                    Some((format!("{pad}{url}{pad}"), uri))
                },
            )
    }

    proptest! {
        #[test]
        fn location_resolution_never_panics(base in base(), location in text()) {
            if let Some(uri) = resolve_location(&base, &location) {
                prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")));
                prop_assert!(uri.host().is_some());
            }
        }

        #[test]
        fn an_absolute_location_resolves_to_itself(
            base in absolute_base(),
            (location, uri) in absolute_url(),
        ) {
            prop_assert_eq!(resolve_location(&base, &location), Some(uri));
        }

        #[test]
        fn following_any_redirect_never_panics(
            uri in base(),
            status in 300u16..310,
            location in text(),
            method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::HEAD)],
            user_referer in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&location) {
                headers.insert(http::header::LOCATION, v);
            }
            let req = HttpRequest {
                method,
                uri,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"x"),
                want_headers: false,
            };
            let resp = HttpResponse {
                status,
                headers,
                body: Bytes::new(),
                error: None,
                error_code: 0,
                proto: "HTTP/1.1",
                timings: Timings::default(),
                duration: std::time::Duration::ZERO,
                bytes_sent: 0,
                bytes_received: 0,
            };
            if let Some(next) = redirect(&req, &resp, user_referer) {
                prop_assert!(next.uri.host().is_some());
            }
        }
    }
}
