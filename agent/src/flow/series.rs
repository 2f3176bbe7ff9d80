//! The metric series of requests, interned on first use per response status and
//! error code (both are tags, and few).

use std::time::Duration;

use barrage_common::metrics::{MetricDef, MetricType, builtin};

use super::steps::*;
use crate::worker::Worker;

/// Records one HTTP response (each redirect hop is a request of its own, as in k6).
pub(super) fn record_http(h: &HttpCall, w: &Worker, resp: &crate::http::HttpResponse) {
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
            let def = |n| builtin::def(n).unwrap_or_else(|| unreachable_def(n));
            let new = HttpIds {
                reqs: w.series(&def(builtin::HTTP_REQS), &tags),
                duration: w.series(&def(builtin::HTTP_REQ_DURATION), &tags),
                waiting: w.series(&def(builtin::HTTP_REQ_WAITING), &tags),
                blocked: w.series(&def(builtin::HTTP_REQ_BLOCKED), &tags),
                connecting: w.series(&def(builtin::HTTP_REQ_CONNECTING), &tags),
                tls_handshaking: w.series(&def(builtin::HTTP_REQ_TLS_HANDSHAKING), &tags),
                sending: w.series(&def(builtin::HTTP_REQ_SENDING), &tags),
                receiving: w.series(&def(builtin::HTTP_REQ_RECEIVING), &tags),
                failed: w.series(&def(builtin::HTTP_REQ_FAILED), &tags),
            };
            ids.push((key, new));
            ids.len() - 1
        }
    };
    let ids = &ids[pos].1;
    let mut rec = w.recorder.borrow_mut();
    rec.add(ids.reqs, 1.0);
    rec.add(ids.duration, resp.duration.as_secs_f64() * 1e3);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t = &resp.timings;
    rec.add(ids.waiting, ms(t.waiting));
    rec.add(ids.blocked, ms(t.blocked));
    rec.add(ids.connecting, ms(t.connecting));
    rec.add(ids.tls_handshaking, ms(t.tls_handshaking));
    rec.add(ids.sending, ms(t.sending));
    rec.add(ids.receiving, ms(t.receiving));
    rec.add(ids.failed, if expected { 0.0 } else { 1.0 });
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
