//! k6's HTTP metrics of one response: the series of one set of tags, and recording a
//! response into them. Both flow languages (the YAML flow and k6 JavaScript) record
//! through this, so their series are the same.

use std::time::Duration;

use barrage_common::metrics::{
    MetricDef, MetricType, Recorder, SeriesId, Tags, ValueKind, builtin,
};

use super::HttpResponse;

/// The series of `http_reqs`, `http_req_duration`, its phases and `http_req_failed`
/// for one set of tags.
pub struct HttpSeries {
    reqs: SeriesId,
    duration: SeriesId,
    waiting: SeriesId,
    blocked: SeriesId,
    connecting: SeriesId,
    tls_handshaking: SeriesId,
    sending: SeriesId,
    receiving: SeriesId,
    /// `None` when the response is not judged (k6's `responseCallback: null`).
    failed: Option<SeriesId>,
}

fn def(name: &str) -> MetricDef {
    builtin::def(name)
        .unwrap_or_else(|| MetricDef::new(name, MetricType::Counter, ValueKind::Default))
}

impl HttpSeries {
    /// Interns the series of `tags` (`http_req_failed` too when `judged`).
    pub fn intern(rec: &mut Recorder, tags: &Tags, judged: bool) -> Self {
        let mut id = |name: &str| rec.series(&def(name), tags);
        HttpSeries {
            reqs: id(builtin::HTTP_REQS),
            duration: id(builtin::HTTP_REQ_DURATION),
            waiting: id(builtin::HTTP_REQ_WAITING),
            blocked: id(builtin::HTTP_REQ_BLOCKED),
            connecting: id(builtin::HTTP_REQ_CONNECTING),
            tls_handshaking: id(builtin::HTTP_REQ_TLS_HANDSHAKING),
            sending: id(builtin::HTTP_REQ_SENDING),
            receiving: id(builtin::HTTP_REQ_RECEIVING),
            failed: judged.then(|| id(builtin::HTTP_REQ_FAILED)),
        }
    }

    /// Records one response (each redirect hop is a request of its own, as in k6);
    /// `expected` is whether its status was expected (`None`: not judged).
    pub fn record(&self, rec: &mut Recorder, resp: &HttpResponse, expected: Option<bool>) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let t = &resp.timings;
        rec.add(self.reqs, 1.0);
        rec.add(self.duration, ms(resp.duration));
        rec.add(self.waiting, ms(t.waiting));
        rec.add(self.blocked, ms(t.blocked));
        rec.add(self.connecting, ms(t.connecting));
        rec.add(self.tls_handshaking, ms(t.tls_handshaking));
        rec.add(self.sending, ms(t.sending));
        rec.add(self.receiving, ms(t.receiving));
        if let (Some(id), Some(ok)) = (self.failed, expected) {
            rec.add(id, if ok { 0.0 } else { 1.0 });
        }
    }
}
