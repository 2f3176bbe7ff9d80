//! The metric series of requests, interned on first use per response status and
//! error code (both are tags, and few).

use barrage_common::metrics::{MetricDef, MetricType};

use super::steps::*;
use crate::http::HttpSeries;
use crate::worker::Worker;

/// Records one HTTP response (each redirect hop is a request of its own, as in k6).
pub(super) fn record_http(
    h: &HttpCall,
    w: &Worker,
    uri: &http::Uri,
    resp: &crate::http::HttpResponse,
) {
    let expected = match &h.expected {
        Some(list) => list.contains(&resp.status),
        None => (200..400).contains(&resp.status),
    };
    let key = (resp.status, resp.error_code);
    let mut ids = h.ids.borrow_mut();
    let pos = match ids.iter().position(|(k, _)| *k == key) {
        Some(p) => p,
        None => {
            let mut tags = h
                .tags
                .clone()
                .with("status", resp.status.to_string())
                .with("expected_response", expected.to_string());
            // k6 tags a failed request with its error code (1212 refused, 1111 not
            // allowed, 1404 ...), so `http_reqs{error_code:1212}` selects them.
            if resp.error_code != 0 {
                tags = tags.with("error_code", resp.error_code.to_string());
            }
            let new = HttpSeries::intern(&mut w.recorder.borrow_mut(), &tags, true);
            ids.push((key, new));
            ids.len() - 1
        }
    };
    let ids = &ids[pos].1;
    let mut rec = w.recorder.borrow_mut();
    ids.record(&mut rec, uri, resp, Some(expected));
    rec.add(h.data_sent, resp.bytes_sent as f64);
    rec.add(h.data_received, resp.bytes_received as f64);
}

pub(super) fn unreachable_def(name: &str) -> MetricDef {
    MetricDef {
        name: name.to_string(),
        kind: MetricType::Counter,
        contains: barrage_common::metrics::ValueKind::Default,
    }
}
