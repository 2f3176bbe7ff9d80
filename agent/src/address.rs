//! Where a step's requests go: one parser for HTTP URLs and gRPC addresses, used by
//! the allow-list check ([`crate::server`]) and by every dialer (the plain HTTP/1.1
//! pool, hyper's connector, the gRPC connections), so that the check and the socket can
//! never disagree about which host and port a step reaches.

use http::Uri;
use http::uri::Authority;

/// A host and port to connect to, and whether the connection speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host name (lower-cased) or IP address; an IPv6 address without brackets.
    pub host: String,
    /// The port: as written, else the scheme's (80, 443).
    pub port: u16,
    /// Whether the connection is TLS (`https://`, or TLS settings on a gRPC step).
    pub tls: bool,
}

/// An address that names no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{addr:?}: {reason}")]
pub struct AddressError {
    /// The address as written.
    pub addr: String,
    /// What is wrong, and the expected form.
    pub reason: String,
}

impl Endpoint {
    /// The endpoint of an absolute `http://` or `https://` URI. User info (`user@`) is
    /// not part of the host.
    ///
    /// Fails on another scheme, a missing host or an empty port.
    pub fn of_uri(uri: &Uri) -> Result<Endpoint, AddressError> {
        let bad = |reason: &str| AddressError {
            addr: uri.to_string(),
            reason: format!("{reason}; expected an absolute http:// or https:// URL"),
        };
        let tls = scheme_tls(uri).ok_or_else(|| bad("not an http:// or https:// URL"))?;
        from_parts(uri, tls).map_err(bad)
    }

    /// [`Endpoint::of_uri`] of a URL as written.
    ///
    /// Fails if it is not a valid absolute http(s) URL.
    pub fn of_url(url: &str) -> Result<Endpoint, AddressError> {
        let uri: Uri = url.parse().map_err(|e| AddressError {
            addr: url.to_string(),
            reason: format!("not a valid URL ({e})"),
        })?;
        Endpoint::of_uri(&uri).map_err(|e| AddressError {
            addr: url.to_string(),
            ..e
        })
    }

    /// The endpoint of a gRPC step's address (`host:port`, `http://host:port` or
    /// `https://host:port`), and its origin URI (`scheme://authority/`). The
    /// connection is TLS for `https://` and whenever the step has TLS settings
    /// (`tls_given`); the default port is then 443, else 80.
    ///
    /// Fails on a path, another scheme, a missing host or an empty port.
    pub fn of_grpc_addr(addr: &str, tls_given: bool) -> Result<(Endpoint, Uri), AddressError> {
        let bad = |reason: &str| AddressError {
            addr: addr.to_owned(),
            reason: format!("{reason}; expected host:port, http://host:port or https://host:port"),
        };
        let with_scheme;
        let full = if addr.contains("://") {
            addr
        } else {
            with_scheme = format!("http://{addr}");
            &with_scheme
        };
        let uri: Uri = full.parse().map_err(|_| bad("not a valid URI"))?;
        let tls = scheme_tls(&uri).ok_or_else(|| bad("unsupported scheme"))? || tls_given;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(bad("a path is not allowed"));
        }
        let endpoint = from_parts(&uri, tls).map_err(bad)?;
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let origin = Uri::builder()
            .scheme(if tls { "https" } else { "http" })
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| bad("not a valid URI"))?;
        Ok((endpoint, origin))
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `Some(true)` for https, `Some(false)` for http (any case), `None` otherwise.
fn scheme_tls(uri: &Uri) -> Option<bool> {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(true),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(false),
        _ => None,
    }
}

/// The port written in `authority`, if any.
///
/// Fails on an empty port or one that is not a number up to 65535 (the `http` crate
/// accepts `host:99999` and reports no port, which would dial the default one).
pub fn port_of(authority: &Authority) -> Result<Option<u16>, &'static str> {
    let text = authority.as_str();
    let after_host = match text.rfind(']') {
        Some(i) => &text[i + 1..],
        None => text.rsplit_once('@').map_or(text, |(_, h)| h),
    };
    match after_host.rsplit_once(':') {
        None => Ok(None),
        Some((_, "")) => Err("empty port"),
        Some((_, p)) => p.parse::<u16>().map(Some).map_err(|_| "invalid port"),
    }
}

/// Host and port of `uri`'s authority; the default port follows `tls`.
fn from_parts(uri: &Uri, tls: bool) -> Result<Endpoint, &'static str> {
    let authority = uri.authority().ok_or("no host")?;
    let host = authority.host();
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port_of(authority)? {
        Some(p) => p,
        None if tls => 443,
        None => 80,
    };
    Ok(Endpoint {
        // Brackets belong to the URI form of an IPv6 address, not to the address.
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, port: u16, tls: bool) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            tls,
        }
    }

    #[test]
    fn urls_name_their_endpoint() {
        let cases = [
            ("http://Example.COM/x?y", ep("example.com", 80, false)),
            ("HTTPS://example.com", ep("example.com", 443, true)),
            (
                "http://user:pw@example.com:8080/",
                ep("example.com", 8080, false),
            ),
            ("https://[::1]:8443/a", ep("::1", 8443, true)),
            ("http://127.0.0.1:1", ep("127.0.0.1", 1, false)),
        ];
        for (url, want) in cases {
            assert_eq!(Endpoint::of_url(url), Ok(want), "{url}");
        }
        for bad in [
            "ftp://x/",
            "/relative",
            "http://",
            "http://x:/",
            "x:80",
            "http://x:99999/",
        ] {
            assert!(Endpoint::of_url(bad).is_err(), "{bad}");
        }
        assert_eq!(ep("::1", 1, false).authority(), "[::1]:1");
    }

    #[test]
    fn grpc_addresses_name_their_endpoint() {
        let of =
            |a: &str, tls: bool| Endpoint::of_grpc_addr(a, tls).map(|(e, o)| (e, o.to_string()));
        assert_eq!(
            of("localhost:50051", false),
            Ok((
                ep("localhost", 50051, false),
                "http://localhost:50051/".into()
            ))
        );
        assert_eq!(
            of("localhost:50051", true),
            Ok((
                ep("localhost", 50051, true),
                "https://localhost:50051/".into()
            ))
        );
        assert_eq!(
            of("https://[::1]:8443", false),
            Ok((ep("::1", 8443, true), "https://[::1]:8443/".into()))
        );
        assert_eq!(of("http://127.0.0.1:1", true).map(|(e, _)| e.tls), Ok(true));
        assert_eq!(of("adder.internal", true).map(|(e, _)| e.port), Ok(443));
        for bad in ["", "ftp://x:1", "http://x:1/path", "x:", "http://:1"] {
            assert!(of(bad, false).is_err(), "{bad:?}");
        }
    }
}
