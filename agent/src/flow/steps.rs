//! The compiled form of a flow's steps: everything that can be done once is done,
//! so that an iteration only renders what changes, sends, and records by index.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use barrage_common::metrics::{MetricType, SeriesId, Tags};
use barrage_common::scenario::SleepSpec;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method as HttpMethod, Uri};

use super::FlowError;
use crate::expr::{Expr, ExprError, Scope, Template, Value, json_to_value};
use crate::grpc::{GrpcClient, Method as GrpcMethod};

pub(super) enum ValueSrc {
    Expr(Expr),
    Literal(Value),
}

impl ValueSrc {
    pub(super) fn compile(v: &serde_json::Value, at: &str) -> Result<Self, FlowError> {
        match v {
            serde_json::Value::String(s) => {
                Expr::compile(s)
                    .map(ValueSrc::Expr)
                    .map_err(|source| FlowError::Expr {
                        at: at.to_string(),
                        source,
                    })
            }
            other => Ok(ValueSrc::Literal(json_to_value(other))),
        }
    }

    pub(super) fn eval(&self, scope: &Scope) -> Result<Value, ExprError> {
        match self {
            ValueSrc::Expr(e) => e.eval(scope),
            ValueSrc::Literal(v) => Ok(v.clone()),
        }
    }
}

pub(super) struct Check {
    pub(super) name: String,
    pub(super) expr: Expr,
    pub(super) pass: SeriesId,
    /// An evaluation error was already reported (once per worker is enough).
    pub(super) warned: Cell<bool>,
}

pub(super) struct OnFail {
    pub(super) record: Vec<Recording>,
    pub(super) abort: bool,
}

pub(super) struct Recording {
    pub(super) metric: String,
    pub(super) kind: MetricType,
    pub(super) value: ValueSrc,
    pub(super) id: SeriesId,
}

pub(super) struct Checks {
    pub(super) items: Vec<Check>,
    pub(super) on_fail: Option<OnFail>,
}

/// What a response handler must build for later expressions.
#[derive(Clone, Copy, Default)]
pub(super) struct Needs {
    pub(super) json: bool,
    pub(super) body: bool,
    pub(super) headers: bool,
}

impl Needs {
    pub(super) fn from_refs<'a>(refs: impl Iterator<Item = &'a str>) -> Self {
        let mut n = Needs::default();
        for r in refs {
            match r {
                "json" => n.json = true,
                "body" => n.body = true,
                "headers" => n.headers = true,
                _ => {}
            }
        }
        n
    }
}

pub(super) enum Url {
    Static(Uri),
    Dynamic(Template),
}

pub(super) enum Body {
    None,
    Static(Bytes),
    Text(Template),
    Json(Template),
}

pub(super) struct HttpCall {
    pub(super) method: HttpMethod,
    pub(super) url: Url,
    pub(super) static_headers: HeaderMap,
    pub(super) dynamic_headers: Vec<(HeaderName, Template)>,
    pub(super) body: Body,
    pub(super) timeout: Duration,
    pub(super) tags: Tags,
    pub(super) expected: Option<Vec<u16>>,
    pub(super) ids: RefCell<Vec<((u16, u32), crate::http::HttpSeries)>>,
    pub(super) data_sent: SeriesId,
    pub(super) data_received: SeriesId,
    pub(super) checks: Checks,
    pub(super) save_as: Option<String>,
    pub(super) needs: Needs,
    /// Redirects followed before a 3xx response is returned.
    pub(super) max_redirects: u32,
}

pub(super) struct GrpcIds {
    pub(super) reqs: SeriesId,
    pub(super) duration: SeriesId,
}

pub(super) struct GrpcCall {
    pub(super) client: GrpcClient,
    pub(super) method: GrpcMethod,
    pub(super) message: Template,
    pub(super) metadata: Vec<(String, Template)>,
    pub(super) timeout: Duration,
    pub(super) tags: Tags,
    pub(super) ids: RefCell<Vec<(i32, GrpcIds)>>,
    pub(super) data_sent: SeriesId,
    pub(super) data_received: SeriesId,
    pub(super) checks: Checks,
    pub(super) save_as: Option<String>,
}

pub(super) struct PollCall {
    pub(super) every: Duration,
    /// Wait `every` before the first attempt too (`delay: first`).
    pub(super) delay_first: bool,
    pub(super) max: u32,
    pub(super) until: Expr,
    pub(super) request: Request,
    pub(super) save_as: String,
}

pub(super) enum Request {
    Http(Box<HttpCall>),
    Grpc(Box<GrpcCall>),
}

pub(super) enum CompiledStep {
    Let(Vec<(String, ValueSrc)>),
    Request(Request),
    Check(Checks),
    Record(Vec<Recording>),
    Sleep(SleepSpec),
    Group(Vec<CompiledStep>),
    Poll(Box<PollCall>),
    /// A step run only when its condition is true.
    If(Expr, Box<CompiledStep>),
}
