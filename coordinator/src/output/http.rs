//! One POST over HTTP or HTTPS (web PKI roots), with a deadline: how the push outputs
//! hand a body to their receiver.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::OutputError;

/// How long one POST may take, as k6's remote-write client allows.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for POSTs to one kind of receiver.
pub(super) struct Poster {
    output: &'static str,
    client: Client<Connector, Full<Bytes>>,
}

impl Poster {
    /// A client whose errors name `output`.
    ///
    /// Fails when TLS cannot be set up.
    pub(super) fn new(output: &'static str) -> Result<Poster, OutputError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| OutputError::Send {
                output,
                what: format!("cannot set up TLS: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Poster {
            output,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// POSTs `body` to `uri` with `headers`.
    ///
    /// Fails when the receiver cannot be reached in [`TIMEOUT`] or answers other than 2xx.
    pub(super) async fn post(
        &self,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<(), OutputError> {
        let fail = |what: String| OutputError::Send {
            output: self.output,
            what: format!("POST {uri}: {what}"),
        };
        let mut req = Request::post(uri.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail(e.to_string()))?;
        for (k, v) in headers {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| fail(format!("{e} ({})", source_chain(&e))))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Err(fail(format!("answered {status}: {}", text.trim())))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(fail(format!("no answer within {} s", TIMEOUT.as_secs()))))
    }
}

/// The causes under an error, innermost last (hyper's own message says little).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

/// Headers as `K1=V1,K2=V2` (k6's `K6_OTEL_HEADERS`) or `K1:V1,K2:V2` (k6's
/// `K6_PROMETHEUS_RW_HTTP_HEADERS`), split on `sep`.
///
/// Fails on a pair without `sep` or a name or value HTTP does not allow.
pub(super) fn parse_headers(
    output: &'static str,
    option: &str,
    text: &str,
    sep: char,
) -> Result<Vec<(HeaderName, HeaderValue)>, OutputError> {
    let mut out = Vec::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let bad = || OutputError::Option {
            output,
            option: option.to_string(),
            value: pair.to_string(),
            expected: format!("expected NAME{sep}VALUE pairs separated by commas"),
        };
        let (k, v) = pair.split_once(sep).ok_or_else(bad)?;
        out.push(header(k.trim(), v.trim()).ok_or_else(bad)?);
    }
    Ok(out)
}

/// A header, if HTTP allows that name and value.
pub(super) fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(name.as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}
