//! A VU's cookie jar, as k6 keeps one: `Set-Cookie` from responses is stored (RFC 6265
//! section 5.3, without the public-suffix list) and sent back in `Cookie` on later
//! requests that match its domain, path and `Secure` flag.
//!
//! Empty by default and cheap: a flow whose server sets no cookie never allocates.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    /// Lower-case, without a leading dot.
    domain: String,
    /// No `Domain` attribute: only the exact host that set it.
    host_only: bool,
    path: String,
    secure: bool,
    expires: Option<SystemTime>,
}

/// The cookies of one VU.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

impl CookieJar {
    /// Forgets every cookie (k6 does this between iterations unless `noCookiesReset`).
    pub fn clear(&mut self) {
        self.cookies.clear();
    }

    /// Whether the jar holds nothing.
    pub fn is_empty(&self) -> bool {
        self.cookies.is_empty()
    }

    /// Stores the cookies of `Set-Cookie` values received from `uri` at `now`.
    pub fn store<'a>(
        &mut self,
        uri: &Uri,
        set_cookies: impl Iterator<Item = &'a HeaderValue>,
        now: SystemTime,
    ) {
        let Some(host) = uri
            .host()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        else {
            return;
        };
        for v in set_cookies {
            let Ok(text) = v.to_str() else { continue };
            let Some(c) = parse(text, &host, uri.path(), now) else {
                continue;
            };
            self.cookies
                .retain(|o| !(o.name == c.name && o.domain == c.domain && o.path == c.path));
            if c.expires.is_none_or(|e| e > now) {
                self.cookies.push(c);
            }
        }
    }

    /// The `Cookie` header for a request to `uri` at `now`: the request's `own` value
    /// first, then the jar's matching cookies; `None` when there is neither.
    pub fn header_for(
        &self,
        uri: &Uri,
        own: Option<&HeaderValue>,
        now: SystemTime,
    ) -> Option<HeaderValue> {
        match (own, self.jar_header(uri, now)) {
            (Some(o), Some(j)) => {
                let mut text = o.as_bytes().to_vec();
                text.extend_from_slice(b"; ");
                text.extend_from_slice(j.as_bytes());
                HeaderValue::from_bytes(&text).ok()
            }
            (Some(o), None) => Some(o.clone()),
            (None, j) => j,
        }
    }

    /// The jar's cookies that match a request to `uri` at `now`, as one header value.
    fn jar_header(&self, uri: &Uri, now: SystemTime) -> Option<HeaderValue> {
        if self.cookies.is_empty() {
            return None;
        }
        let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let https = uri.scheme_str() == Some("https");
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| {
                let domain_ok = if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                };
                domain_ok
                    && path_match(path, &c.path)
                    && (https || !c.secure)
                    && c.expires.is_none_or(|e| e > now)
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        // Longer paths first; the sort is stable, so older cookies first among equals.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let text = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&text).ok()
    }
}

/// Parses one `Set-Cookie` value received from `host` for `request_path`.
fn parse(text: &str, host: &str, request_path: &str, now: SystemTime) -> Option<Cookie> {
    let mut parts = text.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut c = Cookie {
        name: name.to_string(),
        value: value.trim().trim_matches('"').to_string(),
        domain: host.to_string(),
        host_only: true,
        path: default_path(request_path),
        secure: false,
        expires: None,
    };
    let mut max_age: Option<SystemTime> = None;
    for attr in parts {
        let (key, val) = match attr.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (attr.trim(), ""),
        };
        match key.to_ascii_lowercase().as_str() {
            "expires" => {
                if let Ok(t) = httpdate::parse_http_date(val) {
                    c.expires = Some(t);
                }
            }
            "max-age" => {
                if let Ok(secs) = val.parse::<i64>() {
                    max_age = Some(if secs <= 0 {
                        SystemTime::UNIX_EPOCH
                    } else {
                        now.checked_add(Duration::from_secs(secs.unsigned_abs()))
                            .unwrap_or(now)
                    });
                }
            }
            "domain" => {
                let d = val.trim_start_matches('.').to_ascii_lowercase();
                if !d.is_empty() {
                    // A server may only set cookies for its own domain.
                    if !domain_match(host, &d) {
                        return None;
                    }
                    c.domain = d;
                    c.host_only = false;
                }
            }
            "path" if val.starts_with('/') => c.path = val.to_string(),
            "secure" => c.secure = true,
            _ => {}
        }
    }
    // Max-Age wins over Expires.
    if max_age.is_some() {
        c.expires = max_age;
    }
    Some(c)
}

/// RFC 6265 5.1.3: `host` is `domain` or a name under it (never for IP addresses).
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 5.1.4.
fn path_match(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 5.1.4: the request path up to its last `/` ("/" when there is none).
fn default_path(request: &str) -> String {
    match request.rfind('/') {
        Some(i) if i > 0 && request.starts_with('/') => request[..i].to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap_or_default()
    }

    fn jar_with(from: &str, set: &[&str], now: SystemTime) -> CookieJar {
        let mut jar = CookieJar::default();
        let values: Vec<HeaderValue> = set
            .iter()
            .filter_map(|s| HeaderValue::from_str(s).ok())
            .collect();
        jar.store(&uri(from), values.iter(), now);
        jar
    }

    fn cookie_for(jar: &CookieJar, to: &str, now: SystemTime) -> String {
        jar.header_for(&uri(to), None, now)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }

    #[test]
    fn host_only_and_domain_cookies() {
        let now = SystemTime::now();
        let jar = jar_with(
            "http://www.example.test/login",
            &["a=1", "b=2; Domain=.example.test", "c=3; Domain=other.test"],
            now,
        );
        assert_eq!(
            cookie_for(&jar, "http://www.example.test/", now),
            "a=1; b=2"
        );
        // Only the Domain cookie goes to another name under the domain.
        assert_eq!(cookie_for(&jar, "http://api.example.test/x", now), "b=2");
        assert_eq!(cookie_for(&jar, "http://notexample.test/", now), "");
    }

    #[test]
    fn paths_secure_and_order() {
        let now = SystemTime::now();
        let jar = jar_with(
            "https://h.test/app/login",
            &[
                "root=1; Path=/",
                "app=2",
                "deep=3; Path=/app/admin",
                "s=4; Secure",
            ],
            now,
        );
        // Default path of /app/login is /app; longer paths first.
        assert_eq!(
            cookie_for(&jar, "https://h.test/app/admin/x", now),
            "deep=3; app=2; s=4; root=1"
        );
        assert_eq!(
            cookie_for(&jar, "https://h.test/application", now),
            "root=1"
        );
        // Secure cookies only over https.
        assert_eq!(
            cookie_for(&jar, "http://h.test/app/x", now),
            "app=2; root=1"
        );
    }

    #[test]
    fn expiry_replacement_and_deletion() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut jar = jar_with(
            "http://h.test/",
            &[
                "old=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
                "short=1; Max-Age=10",
                "keep=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Max-Age=100",
                "v=1",
            ],
            now,
        );
        assert_eq!(
            cookie_for(&jar, "http://h.test/", now),
            "short=1; keep=1; v=1"
        );
        let later = now + Duration::from_secs(60);
        assert_eq!(cookie_for(&jar, "http://h.test/", later), "keep=1; v=1");
        // Same name, domain and path: replaced; Max-Age=0 deletes.
        let values = [
            HeaderValue::from_static("v=2"),
            HeaderValue::from_static("keep=; Max-Age=0"),
        ];
        jar.store(&uri("http://h.test/"), values.iter(), now);
        assert_eq!(cookie_for(&jar, "http://h.test/", now), "short=1; v=2");
        jar.clear();
        assert!(jar.is_empty());
    }

    #[test]
    fn the_requests_own_cookie_comes_first() {
        let now = SystemTime::now();
        let jar = jar_with("http://h.test/", &["s=1"], now);
        let own = HeaderValue::from_static("mine=1");
        let to = uri("http://h.test/x");
        let text = |v: Option<HeaderValue>| v.map(|v| v.as_bytes().to_vec());
        assert_eq!(
            text(jar.header_for(&to, Some(&own), now)),
            Some(b"mine=1; s=1".to_vec())
        );
        let other = uri("http://other.test/");
        assert_eq!(
            text(jar.header_for(&other, Some(&own), now)),
            Some(b"mine=1".to_vec())
        );
        assert_eq!(text(jar.header_for(&other, None, now)), None);
    }

    #[test]
    fn malformed_values_are_ignored() {
        let now = SystemTime::now();
        let jar = jar_with("http://h.test/", &["noequals", "=novalue", " ; x"], now);
        assert!(jar.is_empty());
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// A `Set-Cookie` value with the attributes the parser reads, in any order and
    /// case, with odd values among them.
    fn set_cookie() -> impl Strategy<Value = String> {
        let attribute = prop_oneof![
            "(?i)expires=[ -~]{0,30}",
            Just("Expires=Wed, 21 Oct 2015 07:28:00 GMT".to_string()),
            "(?i)max-age=-?[0-9]{0,20}",
            "(?i)domain=\\.?[a-z.]{0,12}",
            "(?i)path=[ -~]{0,12}",
            "(?i)secure",
            "[ -~]{0,12}",
        ];
        ("[ -~]{0,12}", prop::collection::vec(attribute, 0..5)).prop_map(|(pair, attributes)| {
            std::iter::once(pair)
                .chain(attributes)
                .collect::<Vec<_>>()
                .join(";")
        })
    }

    /// Any text: arbitrary Unicode or printable ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[ -~]{0,40}"]
    }

    /// A URI from arbitrary text, or a plausible one.
    fn uri() -> impl Strategy<Value = Uri> {
        prop_oneof![
            text().prop_map(|t| t.parse().unwrap_or_default()),
            "https?://[a-z]{1,3}(\\.[a-z]{1,3}){0,2}(/[a-z.]{0,3}){0,3}"
                .prop_map(|t| t.parse().unwrap_or_default()),
            Just(Uri::from_static("http://[::1]:8080/a/b")),
            Just(Uri::from_static("http://10.0.0.1/")),
        ]
    }

    /// An instant anywhere from 1970 to the year 9999.
    fn instant() -> impl Strategy<Value = SystemTime> {
        (0u64..253_402_300_800).prop_map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
    }

    proptest! {
        #[test]
        fn set_cookie_parsing_never_panics(
            value in prop_oneof![text(), set_cookie()],
            host in text(),
            path in text(),
            now in instant(),
        ) {
            let _ = parse(&value, &host, &path, now);
        }

        #[test]
        fn the_jar_never_panics(
            from in uri(),
            to in uri(),
            values in prop::collection::vec(prop_oneof![text(), set_cookie()], 0..6),
            own in prop::option::of(text()),
            now in instant(),
            later in instant(),
        ) {
            let values: Vec<HeaderValue> = values
                .iter()
                .filter_map(|v| HeaderValue::from_str(v).ok())
                .collect();
            let mut jar = CookieJar::default();
            jar.store(&from, values.iter(), now);
            let own = own.and_then(|o| HeaderValue::from_str(&o).ok());
            let _ = jar.header_for(&to, own.as_ref(), later);
            let _ = jar.header_for(&from, None, now);
        }

        #[test]
        fn a_plain_cookie_goes_back_where_it_came_from(
            name in "[A-Za-z0-9_]{1,10}",
            value in "[A-Za-z0-9_]{0,10}",
            from in "https?://[a-z]{1,8}(\\.[a-z]{1,3})?(:[1-9][0-9]{0,3})?(/[a-z]{0,3}){0,3}",
            now in instant(),
        ) {
            let from: Uri = from.parse().unwrap_or_default();
            let mut jar = CookieJar::default();
            let set = HeaderValue::from_str(&format!("{name}={value}")).ok();
            jar.store(&from, set.iter(), now);
            let sent = jar.header_for(&from, None, now);
            let pair = format!("{name}={value}");
            prop_assert_eq!(sent.as_ref().map(HeaderValue::as_bytes), Some(pair.as_bytes()));
        }
    }
}
