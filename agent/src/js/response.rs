//! k6's HTTP response as a native exotic object: its fields are built from the request
//! and response the client returned only when the script reads them, and kept once
//! built (so `res.headers === res.headers`, and a write stays written).
//!
//! A k6 script reads one or two fields of most responses (`status` in a check); building
//! all twenty fields (with the headers and timings objects) as a JS object literal cost
//! about 26k instructions per response, a third of an `http.get`. Here a response costs
//! one object and one allocation until a field is read.
//!
//! To the script it behaves as k6 1.1's (a Go struct seen through goja): its prototype
//! is `Object.prototype`, every field an own, enumerable, writable, non-configurable
//! data property in k6's key order (`Object.keys`, `JSON.stringify`, spreading, `in`,
//! `hasOwnProperty` give what k6 gives); writing a field keeps the value, adding a key
//! or deleting a field throws k6's TypeError. (`Object.defineProperty` of a new key,
//! which k6 refuses, lands in QuickJS's own property table.)
//!
//! The unsafe in this module is the `JsLifetime` impls rquickjs requires of a class
//! (the types only carry `'js` in their JS values).
#![allow(unsafe_code)]

use std::net::IpAddr;
use std::time::Duration;

use http::StatusCode;
use rquickjs::Constructor;
use rquickjs::class::{
    JsCell, JsClass, PropertyDescriptor, PropertyName, Readable, Trace, Tracer, Writable,
};
use rquickjs::{Atom, Class, Ctx, Exception, JsLifetime, Object, Value};

use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage};

use crate::grpc::GrpcResponse;
use crate::http::{HttpRequest, HttpResponse};

/// k6's response keys, in k6's order.
const FIELDS: [&str; 20] = [
    "remote_ip",
    "remote_port",
    "url",
    "status",
    "status_text",
    "proto",
    "headers",
    "cookies",
    "body",
    "timings",
    "tls_version",
    "tls_cipher_suite",
    "ocsp",
    "error",
    "error_code",
    "request",
    "clickLink",
    "html",
    "json",
    "submitForm",
];
/// k6's gRPC response keys, in k6's order.
const GRPC_FIELDS: [&str; 5] = ["message", "error", "headers", "trailers", "status"];

const URL: usize = 2;
const STATUS: usize = 3;
const ERROR: usize = 13;
const REQUEST: usize = 15;

/// `response.timings`' keys, in k6's order.
const TIMINGS: [&str; 8] = [
    "duration",
    "blocked",
    "looking_up",
    "connecting",
    "tls_handshaking",
    "sending",
    "waiting",
    "receiving",
];

/// How `body` is given to the script (`params.responseType`).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ResponseType {
    Text,
    Binary,
    None,
}

/// What a VU's responses share, made once per VU by `modules/http.js`: the keys as
/// atoms, `Object.prototype`, and the JS values every response holds (its methods, the
/// OCSP object and the empty cookies of a response without any).
pub(crate) struct Kit<'js> {
    /// The object's keys (k6's HTTP response's, or its gRPC response's) as atoms.
    atoms: Vec<Atom<'js>>,
    timing_atoms: Vec<Atom<'js>>,
    proto_key: Atom<'js>,
    object_prototype: Object<'js>,
    /// HTTP: `clickLink html json submitForm` (the last four fields), then `ocsp`, then
    /// the empty cookies. gRPC: none.
    values: Vec<Value<'js>>,
}

impl<'js> Kit<'js> {
    /// The kit of HTTP responses: `methods` (`[clickLink, html, json, submitForm]`),
    /// `ocsp` and the empty cookies object.
    pub(super) fn http(
        ctx: &Ctx<'js>,
        methods: [Value<'js>; 4],
        ocsp: Value<'js>,
        no_cookies: Value<'js>,
    ) -> rquickjs::Result<Class<'js, Kit<'js>>> {
        let mut values = Vec::from(methods);
        values.extend([ocsp, no_cookies]);
        Self::new(ctx, &FIELDS, values)
    }

    /// The kit of gRPC responses.
    pub(super) fn grpc(ctx: &Ctx<'js>) -> rquickjs::Result<Class<'js, Kit<'js>>> {
        Self::new(ctx, &GRPC_FIELDS, Vec::new())
    }

    fn new(
        ctx: &Ctx<'js>,
        fields: &'static [&'static str],
        values: Vec<Value<'js>>,
    ) -> rquickjs::Result<Class<'js, Kit<'js>>> {
        let atom = |s: &str| Atom::from_str(ctx.clone(), s);
        let object: Object = ctx.globals().get("Object")?;
        let object_prototype: Object = object.get("prototype")?;
        // Its own prototype, not rquickjs's (one per runtime, shared by the contexts of
        // a shared runtime).
        Class::instance_proto(
            Kit {
                atoms: fields.iter().map(|s| atom(s)).collect::<Result<_, _>>()?,
                timing_atoms: TIMINGS.iter().map(|s| atom(s)).collect::<Result<_, _>>()?,
                proto_key: atom("__proto__")?,
                object_prototype: object_prototype.clone(),
                values,
            },
            object_prototype,
        )
    }

    /// This VU's `Object.prototype`.
    pub(super) fn object_prototype(&self) -> Object<'js> {
        self.object_prototype.clone()
    }

    fn field(&self, atom: &Atom<'js>) -> Option<usize> {
        self.atoms.iter().position(|a| a == atom)
    }
}

impl<'js> Trace<'js> for Kit<'js> {
    fn trace<'a>(&self, tracer: Tracer<'a, 'js>) {
        self.object_prototype.trace(tracer);
        for v in &self.values {
            v.trace(tracer);
        }
        // An atom holds its context: unmarked, the context would never be freed.
        for a in self.atoms.iter().chain(&self.timing_atoms) {
            a.trace(tracer);
        }
        self.proto_key.trace(tracer);
    }
}

// SAFETY: `Kit` holds JS values of one runtime only, tied to `'js`.
unsafe impl<'js> JsLifetime<'js> for Kit<'js> {
    type Changed<'to> = Kit<'to>;
}

impl<'js> JsClass<'js> for Kit<'js> {
    const NAME: &'static str = "HttpKit";
    type Mutable = Readable;

    fn constructor(_ctx: &Ctx<'js>) -> rquickjs::Result<Option<Constructor<'js>>> {
        Ok(None)
    }
}

/// What a response was made from.
pub(super) enum Data {
    /// A request as sent (its last hop) and its response.
    Sent {
        response: Box<HttpResponse>,
        request: Box<HttpRequest>,
        response_type: ResponseType,
    },
    /// A request never made (bad arguments): k6's empty response with the reason.
    Unsent { error: String, code: u32 },
    /// A gRPC call's outcome, its method's output type, and whether the message is
    /// discarded (`discardResponseMessage`).
    Grpc {
        response: Box<GrpcResponse>,
        output: MessageDescriptor,
        discard: bool,
    },
}

/// One response.
pub(crate) struct Response<'js> {
    kit: Class<'js, Kit<'js>>,
    data: Data,
    /// The fields built (or written) so far.
    slots: [Option<Value<'js>>; FIELDS.len()],
}

impl<'js> Response<'js> {
    /// The response object for `data`.
    pub(super) fn make(kit: &Class<'js, Kit<'js>>, data: Data) -> rquickjs::Result<Value<'js>> {
        let proto = kit.borrow().object_prototype.clone();
        let r = Response {
            kit: kit.clone(),
            data,
            slots: std::array::from_fn(|_| None),
        };
        Ok(Class::instance_proto(r, proto)?.into_value())
    }

    /// Field `i`, built on first use.
    fn slot(this: &JsCell<'js, Self>, ctx: &Ctx<'js>, i: usize) -> rquickjs::Result<Value<'js>> {
        if let Some(v) = &this.borrow().slots[i] {
            return Ok(v.clone());
        }
        // `request` shares the url string.
        let url = if i == REQUEST && matches!(this.borrow().data, Data::Sent { .. }) {
            Some(Self::slot(this, ctx, URL)?)
        } else {
            None
        };
        // Built under a shared borrow (a GC started by an allocation traces this object
        // through one), stored under a short exclusive one.
        let v = this.borrow().build(ctx, i, url)?;
        this.borrow_mut().slots[i] = Some(v.clone());
        Ok(v)
    }

    fn build(
        &self,
        ctx: &Ctx<'js>,
        i: usize,
        url: Option<Value<'js>>,
    ) -> rquickjs::Result<Value<'js>> {
        let kit = self.kit.borrow();
        let int = |n: u32| Value::new_int(ctx.clone(), n as i32);
        let text = |s: &str| rquickjs::String::from_str(ctx.clone(), s).map(|s| s.into_value());
        let (response, request, response_type) = match &self.data {
            Data::Sent {
                response,
                request,
                response_type,
            } => (response, request, *response_type),
            Data::Grpc {
                response,
                output,
                discard,
            } => return grpc_field(ctx, i, response, output, *discard),
            Data::Unsent { error, code } => {
                return match FIELDS[i] {
                    "remote_port" | "status" => Ok(int(0)),
                    "headers" | "cookies" => Ok(Object::new(ctx.clone())?.into_value()),
                    "body" | "request" => Ok(Value::new_null(ctx.clone())),
                    "timings" => timings(ctx, &kit, &[Duration::ZERO; 8]),
                    "ocsp" => Ok(kit.values[4].clone()),
                    "error" => text(error),
                    "error_code" => Ok(int(*code)),
                    "clickLink" => Ok(kit.values[0].clone()),
                    "html" => Ok(kit.values[1].clone()),
                    "json" => Ok(kit.values[2].clone()),
                    "submitForm" => Ok(kit.values[3].clone()),
                    _ => text(""),
                };
            }
        };
        let status = response.status;
        match i {
            0 | 1 => {
                let ip = (status != 0)
                    .then(|| request.uri.host())
                    .flatten()
                    .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok());
                let Some(ip) = ip else {
                    return if i == 0 { text("") } else { Ok(int(0)) };
                };
                if i == 1 {
                    let port = request.uri.port_u16().unwrap_or(
                        if request.uri.scheme_str() == Some("https") {
                            443
                        } else {
                            80
                        },
                    );
                    return Ok(int(port.into()));
                }
                match (ip, request.uri.host()) {
                    // A v4 address parses only from its canonical text: no formatting.
                    (IpAddr::V4(_), Some(t)) => text(t),
                    _ => text(&ip.to_string()),
                }
            }
            URL => text(&request.uri.to_string()),
            STATUS => Ok(int(status.into())),
            4 => match StatusCode::from_u16(status) {
                _ if status == 0 => text(""),
                Ok(StatusCode::OK) => text("200 OK"),
                Ok(s) => match s.canonical_reason() {
                    Some(r) => text(&format!("{status} {r}")),
                    None => text(&status.to_string()),
                },
                Err(_) => text(&status.to_string()),
            },
            5 => text(response.proto),
            6 => Ok(super::http::headers_object(ctx, &response.headers)?.into_value()),
            7 => {
                if response.headers.contains_key(http::header::SET_COOKIE) {
                    Ok(super::http::response_cookies(ctx, &response.headers)?.into_value())
                } else {
                    Ok(kit.values[5].clone())
                }
            }
            8 => {
                if status == 0 {
                    return Ok(Value::new_null(ctx.clone()));
                }
                match response_type {
                    ResponseType::Text => text(&String::from_utf8_lossy(&response.body)),
                    ResponseType::Binary => Ok(rquickjs::ArrayBuffer::new_copy(
                        ctx.clone(),
                        &response.body[..],
                    )?
                    .into_value()),
                    ResponseType::None => Ok(Value::new_null(ctx.clone())),
                }
            }
            9 => {
                let t = &response.timings;
                timings(
                    ctx,
                    &kit,
                    &[
                        response.duration,
                        t.blocked,
                        Duration::ZERO,
                        t.connecting,
                        t.tls_handshaking,
                        t.sending,
                        t.waiting,
                        t.receiving,
                    ],
                )
            }
            10 | 11 => text(""),
            12 => Ok(kit.values[4].clone()),
            ERROR => {
                if status == 0 {
                    text(&super::http::k6_error(response))
                } else {
                    text("")
                }
            }
            14 => Ok(int(response.error_code)),
            15 => {
                let url = match url {
                    Some(u) => u,
                    None => text(&request.uri.to_string())?,
                };
                Ok(super::http::request_object(ctx, request, url)?.into_value())
            }
            _ => Ok(kit.values[i - 16].clone()),
        }
    }

    /// The `Request Failed` warning k6 logs for a transport failure, if this is one.
    pub(super) fn failure(data: &Data) -> Option<String> {
        match data {
            Data::Sent { response, .. } if response.status == 0 => {
                let e = super::http::k6_error(response);
                (!e.is_empty()).then_some(e)
            }
            _ => None,
        }
    }
}

/// k6's `timings` object, durations in milliseconds.
fn timings<'js>(ctx: &Ctx<'js>, kit: &Kit<'js>, d: &[Duration; 8]) -> rquickjs::Result<Value<'js>> {
    let o = Object::new(ctx.clone())?;
    for (atom, d) in kit.timing_atoms.iter().zip(d) {
        o.set(atom.clone(), d.as_secs_f64() * 1e3)?;
    }
    Ok(o.into_value())
}

impl<'js> Trace<'js> for Response<'js> {
    fn trace<'a>(&self, tracer: Tracer<'a, 'js>) {
        self.kit.trace(tracer);
        for v in self.slots.iter().flatten() {
            v.trace(tracer);
        }
    }
}

// SAFETY: `Response` holds JS values of one runtime only, tied to `'js`.
unsafe impl<'js> JsLifetime<'js> for Response<'js> {
    type Changed<'to> = Response<'to>;
}

impl<'js> JsClass<'js> for Response<'js> {
    const NAME: &'static str = "Object";
    const KIND: rquickjs::class::ClassKind = rquickjs::class::ClassKind::Exotic;
    type Mutable = Writable;

    fn constructor(_ctx: &Ctx<'js>) -> rquickjs::Result<Option<Constructor<'js>>> {
        Ok(None)
    }

    fn exotic_get_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
        _receiver: Value<'js>,
    ) -> rquickjs::Result<Value<'js>> {
        let proto = {
            let r = this.borrow();
            let kit = r.kit.borrow();
            if let Some(i) = kit.field(&atom) {
                drop(kit);
                drop(r);
                return Self::slot(this, ctx, i);
            }
            if atom == kit.proto_key {
                return Ok(kit.object_prototype.clone().into_value());
            }
            kit.object_prototype.clone()
        };
        proto.get(atom)
    }

    fn exotic_set_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
        _receiver: Value<'js>,
        value: Value<'js>,
    ) -> rquickjs::Result<bool> {
        let field = this.borrow().kit.borrow().field(&atom);
        match field {
            Some(i) => {
                this.borrow_mut().slots[i] = Some(value);
                Ok(true)
            }
            None => Err(Exception::throw_type(
                ctx,
                &format!(
                    "Cannot assign to property {} of a host object",
                    atom.to_string()?
                ),
            )),
        }
    }

    fn exotic_has_property(
        this: &JsCell<'js, Self>,
        _ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<bool> {
        let proto = {
            let r = this.borrow();
            let kit = r.kit.borrow();
            if kit.field(&atom).is_some() {
                return Ok(true);
            }
            kit.object_prototype.clone()
        };
        proto.contains_key(atom)
    }

    fn exotic_delete_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<bool> {
        if this.borrow().kit.borrow().field(&atom).is_none() {
            return Ok(true);
        }
        Err(Exception::throw_type(
            ctx,
            &format!(
                "Cannot delete property {} from a Go type",
                atom.to_string()?
            ),
        ))
    }

    fn exotic_get_own_property(
        this: &JsCell<'js, Self>,
        ctx: &Ctx<'js>,
        atom: Atom<'js>,
    ) -> rquickjs::Result<Option<PropertyDescriptor<'js>>> {
        let field = this.borrow().kit.borrow().field(&atom);
        match field {
            Some(i) => {
                let v = Self::slot(this, ctx, i)?;
                Ok(Some(PropertyDescriptor::new_value(v, false, true, true)))
            }
            None => Ok(None),
        }
    }

    fn exotic_get_own_property_names(
        this: &JsCell<'js, Self>,
        _ctx: &Ctx<'js>,
    ) -> rquickjs::Result<Vec<PropertyName<'js>>> {
        let r = this.borrow();
        let kit = r.kit.borrow();
        Ok(kit
            .atoms
            .iter()
            .map(|atom| PropertyName {
                atom: atom.clone(),
                is_enumerable: true,
            })
            .collect())
    }
}

/// Field `i` of a gRPC response (`GRPC_FIELDS`): k6's `{message, error, headers,
/// trailers, status}`; metadata by name as lists of values, in `headers` for an OK call
/// and in `trailers` otherwise (as the JSON the JS module parsed before).
fn grpc_field<'js>(
    ctx: &Ctx<'js>,
    i: usize,
    resp: &GrpcResponse,
    output: &MessageDescriptor,
    discard: bool,
) -> rquickjs::Result<Value<'js>> {
    let ok = resp.code == tonic::Code::Ok;
    match GRPC_FIELDS[i] {
        "message" => {
            if discard {
                return Ok(Value::new_null(ctx.clone()));
            }
            match &resp.message {
                Some(m) => message_js(ctx, m),
                None => message_js(ctx, &DynamicMessage::new(output.clone())),
            }
        }
        "error" => {
            if ok {
                return Ok(Value::new_null(ctx.clone()));
            }
            let e = Object::new(ctx.clone())?;
            e.set("code", resp.code as i32)?;
            e.set("message", resp.status_message.as_str())?;
            e.set("details", rquickjs::Array::new(ctx.clone())?)?;
            Ok(e.into_value())
        }
        "headers" | "trailers" => {
            let o = Object::new(ctx.clone())?;
            if (GRPC_FIELDS[i] == "headers") == ok {
                for (k, v) in crate::grpc::header_pairs(&resp.headers) {
                    if k == "grpc-status" || k == "grpc-message" {
                        continue;
                    }
                    let list: rquickjs::Array =
                        match o.get::<_, Option<rquickjs::Array>>(k.as_str())? {
                            Some(l) => l,
                            None => {
                                let l = rquickjs::Array::new(ctx.clone())?;
                                o.set(k.as_str(), l.clone())?;
                                l
                            }
                        };
                    list.set(list.len(), v)?;
                }
            }
            Ok(o.into_value())
        }
        _ => Ok(Value::new_int(ctx.clone(), resp.code as i32)),
    }
}

/// A message as k6 shows it (protojson with every field, 64-bit integers as strings):
/// built directly for messages of singular scalar, string and enum fields (the usual
/// reply), else from its JSON form.
fn message_js<'js>(ctx: &Ctx<'js>, m: &DynamicMessage) -> rquickjs::Result<Value<'js>> {
    match direct_message(ctx, m)? {
        Some(v) => Ok(v),
        None => json_js(ctx, &crate::grpc::message_to_k6_json(m)),
    }
}

fn direct_message<'js>(ctx: &Ctx<'js>, m: &DynamicMessage) -> rquickjs::Result<Option<Value<'js>>> {
    use prost_reflect::Value as P;
    let desc = m.descriptor();
    if desc.oneofs().next().is_some() || desc.full_name().starts_with("google.protobuf.") {
        return Ok(None);
    }
    let o = Object::new(ctx.clone())?;
    for field in desc.fields() {
        if field.is_list() || field.is_map() {
            return Ok(None);
        }
        let text = |s: &str| rquickjs::String::from_str(ctx.clone(), s).map(|s| s.into_value());
        let v = match &*m.get_field(&field) {
            P::Bool(b) => Value::new_bool(ctx.clone(), *b),
            P::I32(i) => Value::new_int(ctx.clone(), *i),
            P::U32(u) => Value::new_number(ctx.clone(), f64::from(*u)),
            P::I64(i) => text(&i.to_string())?,
            P::U64(u) => text(&u.to_string())?,
            P::F32(f) if f.is_finite() => Value::new_number(ctx.clone(), f64::from(*f)),
            P::F64(f) if f.is_finite() => Value::new_number(ctx.clone(), *f),
            P::String(s) => text(s)?,
            P::EnumNumber(n) => match field.kind().as_enum().and_then(|e| e.get_value(*n)) {
                Some(v) => text(v.name())?,
                None => Value::new_int(ctx.clone(), *n),
            },
            _ => return Ok(None),
        };
        o.set(field.json_name(), v)?;
    }
    Ok(Some(o.into_value()))
}

/// A JSON value as the JS value `JSON.parse` would give.
fn json_js<'js>(ctx: &Ctx<'js>, j: &serde_json::Value) -> rquickjs::Result<Value<'js>> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => Value::new_null(ctx.clone()),
        J::Bool(b) => Value::new_bool(ctx.clone(), *b),
        J::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
            Some(i) => Value::new_int(ctx.clone(), i),
            None => Value::new_number(ctx.clone(), n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
        J::Array(a) => {
            let out = rquickjs::Array::new(ctx.clone())?;
            for (i, v) in a.iter().enumerate() {
                out.set(i, json_js(ctx, v)?)?;
            }
            out.into_value()
        }
        J::Object(m) => {
            let out = Object::new(ctx.clone())?;
            for (k, v) in m {
                out.set(k.as_str(), json_js(ctx, v)?)?;
            }
            out.into_value()
        }
    })
}
