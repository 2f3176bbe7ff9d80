//! `--allow-target`: the hosts and ports an agent may send load to. Enforced twice:
//! [`check_targets`] refuses a plan aimed elsewhere before anything is sent (an early,
//! clear error), and every dialer asks [`AllowList::check`] before it opens a
//! connection (the guarantee: redirect hops and URLs built at run time go through it
//! too). Both read targets with the one parser the dialers use ([`crate::address`]),
//! so the check and the sockets agree on where each step goes.

use std::sync::Arc;

use barrage_common::scenario::{RequestRef, TestPlan};
use http::uri::Authority;

use crate::address::{Endpoint, port_of};

/// A `HOST[:PORT]` the agent may send load to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowTarget {
    /// Host name or address, lower-cased; an IPv6 address without brackets.
    pub host: String,
    /// Port, or any port when `None`.
    pub port: Option<u16>,
}

impl std::str::FromStr for AllowTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected HOST or HOST:PORT");
        let authority: Authority = s.parse().map_err(|_| bad())?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(bad());
        }
        let port = port_of(&authority).map_err(|_| bad())?;
        Ok(AllowTarget {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port,
        })
    }
}

impl AllowTarget {
    /// Whether this entry allows connecting to `endpoint`.
    fn allows(&self, endpoint: &Endpoint) -> bool {
        self.host == endpoint.host && self.port.is_none_or(|p| p == endpoint.port)
    }
}

/// The targets an agent's dialers may connect to: anything (no `--allow-target`, an
/// embedded run), or only the entries given. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    /// `None`: anything goes, and a check costs one branch.
    only: Option<Arc<[AllowTarget]>>,
}

/// A connection the allow-list refused; nothing was sent to the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dial {authority}: not allowed by this agent's --allow-target list")]
pub struct NotAllowed {
    /// `host:port` of the refused endpoint.
    pub authority: String,
}

impl AllowList {
    /// A list that allows every target.
    pub fn anything() -> AllowList {
        AllowList { only: None }
    }

    /// A list that allows only `targets`; an empty list allows everything (as an agent
    /// without `--allow-target`).
    pub fn only(targets: &[AllowTarget]) -> AllowList {
        AllowList {
            only: (!targets.is_empty()).then(|| targets.into()),
        }
    }

    /// Whether any target is refused.
    pub fn is_restricted(&self) -> bool {
        self.only.is_some()
    }

    /// Called by every dialer before it opens a connection to `endpoint`.
    ///
    /// Fails when the list is restricted and no entry allows the endpoint.
    pub fn check(&self, endpoint: &Endpoint) -> Result<(), NotAllowed> {
        match &self.only {
            None => Ok(()),
            Some(list) if list.iter().any(|a| a.allows(endpoint)) => Ok(()),
            Some(_) => Err(NotAllowed {
                authority: endpoint.authority(),
            }),
        }
    }
}

/// A URL's `scheme://authority`, refused when any of it is a template (then where the
/// step goes is only known at run time).
fn static_origin(url: &str) -> Result<&str, String> {
    let end = url
        .find("://")
        .map(|i| i + 3)
        .map(|from| {
            url[from..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |j| from + j)
        })
        .ok_or_else(|| format!("{url:?}: not an absolute URL"))?;
    let origin = &url[..end];
    if origin.contains("{{") {
        return Err(format!(
            "{url:?}: the host is a template, so it cannot be checked against --allow-target"
        ));
    }
    Ok(origin)
}

/// Every endpoint a test may send load to, each once, sorted.
///
/// Fails for a target that cannot be known before the run (a templated host) or does
/// not parse, naming the step.
pub fn targets(test: &TestPlan) -> Result<Vec<Endpoint>, String> {
    let mut out: Vec<Endpoint> = Vec::new();
    test.walk(&mut |at, step| {
        for (field, request) in step.requests() {
            let endpoint = match request {
                RequestRef::Http(h) => static_origin(&h.url).and_then(|origin| {
                    Endpoint::of_url(origin).map_err(|e| e.to_string())
                }),
                RequestRef::Grpc(g) if g.addr.contains("{{") => Err(format!(
                    "{:?}: the address is a template, so it cannot be checked against --allow-target",
                    g.addr
                )),
                RequestRef::Grpc(g) => Endpoint::of_grpc_addr(&g.addr, g.tls.is_some())
                    .map(|(e, _)| e)
                    .map_err(|e| e.to_string()),
            }
            .map_err(|e| format!("{at}.{field}: {e}"))?;
            out.push(endpoint);
        }
        Ok::<(), String>(())
    })?;
    out.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    out.dedup_by(|a, b| a.host == b.host && a.port == b.port);
    Ok(out)
}

/// Refuses a test that sends load outside `allowed` (no list = anything goes).
///
/// Fails naming the first target no entry allows.
pub fn check_targets(test: &TestPlan, allowed: &[AllowTarget]) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    for target in targets(test)? {
        if !allowed.iter().any(|a| a.allows(&target)) {
            return Err(format!(
                "target {} is not allowed by this agent's --allow-target list",
                target.authority()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrage_common::scenario::{Overrides, load_str};

    fn test_of(flow: &str) -> TestPlan {
        let text = format!(
            "options: {{vus: 1, iterations: 1}}\nprotos: {{files: [x.proto]}}\nflows: {{f: {flow}}}\n"
        );
        load_str(
            std::path::Path::new("t.yaml"),
            &text,
            |_| None,
            &Overrides::default(),
        )
        .unwrap()
    }

    #[test]
    fn allow_entries_parse_like_addresses() {
        let a: AllowTarget = "Adder.Internal:50051".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("adder.internal", Some(50051)));
        let a: AllowTarget = "[::1]".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", None));
        for bad in ["", "host:", "user@host", "host:99999", "a b"] {
            assert!(bad.parse::<AllowTarget>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets_are_where_the_dialers_go() {
        let t = test_of(
            "[{http: {url: 'http://User@Example.com/a/{{ x }}'}}, \
             {group: {name: g, steps: [{grpc: {addr: 'adder:50051', method: m}}]}}, \
             {poll: {every: 1s, max: 1, until: 'true', http: {url: 'https://example.com:8443'}}}]",
        );
        let got: Vec<String> = targets(&t)
            .unwrap()
            .iter()
            .map(Endpoint::authority)
            .collect();
        assert_eq!(got, ["adder:50051", "example.com:80", "example.com:8443"]);
        let allowed: Vec<AllowTarget> = ["adder:50051", "example.com"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(check_targets(&t, &allowed).is_ok());
        let e = check_targets(&t, &allowed[..1]).unwrap_err();
        assert!(e.contains("example.com:80"), "{e}");
    }

    #[test]
    fn the_dial_check_allows_only_the_entries() {
        let ep = |host: &str, port| Endpoint {
            host: host.into(),
            port,
            tls: false,
        };
        let entries: Vec<AllowTarget> = ["adder:50051", "[::1]"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let list = AllowList::only(&entries);
        assert!(list.is_restricted());
        assert_eq!(list.check(&ep("adder", 50051)), Ok(()));
        assert_eq!(list.check(&ep("::1", 8080)), Ok(()));
        assert_eq!(
            list.check(&ep("adder", 50052)),
            Err(NotAllowed {
                authority: "adder:50052".into()
            })
        );
        assert!(list.check(&ep("::2", 1)).is_err());
        for open in [AllowList::anything(), AllowList::only(&[])] {
            assert!(!open.is_restricted());
            assert_eq!(open.check(&ep("anywhere", 1)), Ok(()));
        }
    }

    #[test]
    fn templated_hosts_cannot_be_checked() {
        for flow in [
            "[{http: {url: 'http://{{ host }}/'}}]",
            "[{http: {url: '{{ x }}#://allowed/'}}]",
            "[{grpc: {addr: '{{ a }}:1', method: m}}]",
        ] {
            let e = targets(&test_of(flow)).unwrap_err();
            assert!(
                e.contains("template") && e.contains("flows.f[0]"),
                "{flow}: {e}"
            );
        }
    }
}
