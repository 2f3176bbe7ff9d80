//! `k6/net/grpc`'s native half: loading protos, connecting, unary calls over the
//! worker's h2 client pool (the YAML engine's, so the two share connections and the
//! `--allow-target` check), with the YAML engine's series and k6's tags. The `Client`
//! class and the `Status*` constants are in `modules/grpc.js`.
//!
//! k6's behaviour, measured on k6 1.1: `load` only in init, import paths relative to the
//! main script's folder; `connect` throws in init and when the target cannot be reached;
//! `invoke` throws before sending on an unknown method, a request that does not fit the
//! input type or an unknown param, and otherwise returns `{status, message, headers,
//! trailers, error}` whatever the status (a stopped server is status 14, timed), with
//! `message` in protojson (int64 as strings, every field present).
//!
//! A script's `.proto` files are read from the disk by the coordinator's init run and
//! recorded in `Shared::read`; on agents they come from the shipped files, never the
//! disk. A worker compiles each `load` once ([`GrpcShared`]): init runs once per VU.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use barrage_common::metrics::{SeriesId, Tags, builtin};
use barrage_common::scenario::FileBytes;
use prost_reflect::DynamicMessage;
use rquickjs::module::Exports;
use rquickjs::{Array, Class, Ctx, Exception, Function, Object, Value};

use super::host::{Shared, VuHost, builtin_def, host, tag_pairs};
use super::loader::normalize;
use super::response::{Data, Kit, Response};
use crate::flow::GRPC_CONNECTIONS_PER_WORKER;
use crate::grpc::{
    GrpcClient, GrpcResponse, GrpcTls, MAX_PROTO_FILE_BYTES, Method, ProtoSet, json_to_message,
    proto_set_from_reflection,
};

/// The native functions this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &[
    "grpcNew",
    "grpcLoad",
    "grpcLoadProtoset",
    "grpcConnect",
    "grpcInvoke",
    "grpcKit",
    "grpcClose",
];

/// k6's default `connect` timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// k6's default `invoke` timeout.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// A protoset is kept in the files map under its path with this suffix (its bytes as
/// they are: the key only keeps it apart from a `load` of the same path).
const PROTOSET_KEY_SUFFIX: &str = "#protoset";

/// A `load`'s import folders (as resolved) and files (as given).
type LoadKey = (Vec<String>, Vec<String>);

/// What the VUs of one worker share: the script's folder (import paths and protoset
/// paths are relative to it, as in k6), and what `load`/`reflect` gave, compiled once.
pub(crate) struct GrpcShared {
    dir: PathBuf,
    insecure_skip_verify: bool,
    /// By the load's arguments (import folders as resolved, files as given).
    loaded: RefCell<HashMap<LoadKey, Rc<Loaded>>>,
    /// By target address and plaintext.
    reflected: RefCell<HashMap<(String, bool), Rc<Loaded>>>,
}

impl GrpcShared {
    /// The state for the script `main`; `insecure_skip_verify` is the test's
    /// `insecureSkipTLSVerify`, which applies to TLS connections as in k6.
    pub(crate) fn new(main: &str, insecure_skip_verify: bool) -> GrpcShared {
        let dir = Path::new(main)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        GrpcShared {
            dir,
            insecure_skip_verify,
            loaded: RefCell::new(HashMap::new()),
            reflected: RefCell::new(HashMap::new()),
        }
    }

    /// `p` against the script's folder (`file://` dropped, as k6 does).
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p.strip_prefix("file://").unwrap_or(p));
        normalize(&self.dir.join(p))
    }
}

/// The methods of one loaded descriptor set, by `/package.Service/Method`.
struct Loaded {
    methods: Vec<MethodEntry>,
}

struct MethodEntry {
    path: String,
    package: String,
    service: String,
    name: String,
    client_stream: bool,
    server_stream: bool,
    /// The unary method, or why it cannot be invoked (streaming).
    call: Result<Rc<Method>, String>,
}

impl Loaded {
    fn of(set: &ProtoSet) -> Loaded {
        let mut methods = Vec::new();
        for service in set.pool().services() {
            for m in service.methods() {
                let path = format!("/{}/{}", service.full_name(), m.name());
                methods.push(MethodEntry {
                    call: set.method(&path).map(Rc::new).map_err(|e| e.to_string()),
                    package: service.package_name().to_string(),
                    service: service.name().to_string(),
                    name: m.name().to_string(),
                    client_stream: m.is_client_streaming(),
                    server_stream: m.is_server_streaming(),
                    path,
                });
            }
        }
        Loaded { methods }
    }
}

/// One `grpc.Client` of a VU.
#[derive(Default)]
struct ClientState {
    /// Every method loaded so far (`load` can be called more than once, `reflect` adds).
    methods: HashMap<String, Result<Rc<Method>, String>>,
    conn: Option<Conn>,
}

struct Conn {
    client: GrpcClient,
    addr: String,
    /// `grpc_reqs` and `grpc_req_duration` series by method, status and group, for
    /// calls without tags of their own.
    series: HashMap<(String, i32, String), (SeriesId, SeriesId)>,
}

/// A VU's clients, by the id `grpcNew` returned.
#[derive(Default)]
struct Clients {
    list: RefCell<Vec<ClientState>>,
    /// `data_sent` and `data_received` of the VU's scenario.
    data: Cell<Option<(SeriesId, SeriesId)>>,
}

fn throw(ctx: &Ctx<'_>, msg: &str) -> rquickjs::Error {
    Exception::throw_message(ctx, msg)
}

/// `k6/net/grpc`'s natives; each finds its VU when called ([`host`]). The client
/// table is the module instance's: a client's state is its own, whichever VU made it.
pub(super) fn export<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
    let clients = Rc::new(Clients::default());
    {
        let clients = clients.clone();
        exports.export(
            "grpcNew",
            Function::new(ctx.clone(), move || {
                let mut list = clients.list.borrow_mut();
                list.push(ClientState::default());
                (list.len() - 1) as u32
            })?,
        )?;
    }
    {
        let clients = clients.clone();
        exports.export(
            "grpcLoad",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, id: u32, paths: Vec<String>, files: Vec<String>| {
                    let h = host(&ctx)?;
                    if !h.suspender.in_init() {
                        return Err(throw(&ctx, "load must be called in the init context"));
                    }
                    let loaded = load(&h.shared, &paths, &files).map_err(|m| throw(&ctx, &m))?;
                    add_methods(&ctx, &clients, id, &loaded)
                },
            )?,
        )?;
    }
    {
        let clients = clients.clone();
        exports.export(
            "grpcLoadProtoset",
            Function::new(ctx.clone(), move |ctx: Ctx<'js>, id: u32, path: String| {
                let h = host(&ctx)?;
                if !h.suspender.in_init() {
                    return Err(throw(&ctx, "load must be called in the init context"));
                }
                let loaded = load_protoset(&h.shared, &path).map_err(|m| throw(&ctx, &m))?;
                add_methods(&ctx, &clients, id, &loaded)
            })?,
        )?;
    }
    {
        let clients = clients.clone();
        exports.export(
            "grpcConnect",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>, id: u32, addr: String, params: Value<'js>| {
                    connect(&ctx, &host(&ctx)?, &clients, id, addr, &params)
                },
            )?,
        )?;
    }
    {
        let clients = clients.clone();
        exports.export(
            "grpcInvoke",
            Function::new(
                ctx.clone(),
                move |ctx: Ctx<'js>,
                      kit: Class<'js, Kit<'js>>,
                      id: u32,
                      method: String,
                      request: Value<'js>,
                      params: Value<'js>| {
                    invoke(
                        &ctx,
                        &host(&ctx)?,
                        &clients,
                        &kit,
                        id,
                        &method,
                        request,
                        &params,
                    )
                },
            )?,
        )?;
    }
    exports.export(
        "grpcKit",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| Kit::grpc(&ctx))?,
    )?;
    exports.export(
        "grpcClose",
        Function::new(ctx.clone(), move |id: u32| {
            if let Some(c) = clients.list.borrow_mut().get_mut(id as usize) {
                c.conn = None;
            }
        })?,
    )?;
    Ok(())
}

/// Adds a load's methods to the client `id`; returns k6's list of method infos.
fn add_methods<'js>(
    ctx: &Ctx<'js>,
    clients: &Clients,
    id: u32,
    loaded: &Loaded,
) -> rquickjs::Result<Array<'js>> {
    let mut list = clients.list.borrow_mut();
    let Some(client) = list.get_mut(id as usize) else {
        return Err(Exception::throw_internal(ctx, "unknown gRPC client"));
    };
    let out = Array::new(ctx.clone())?;
    for (i, m) in loaded.methods.iter().enumerate() {
        client.methods.insert(m.path.clone(), m.call.clone());
        let o = Object::new(ctx.clone())?;
        o.set("package", m.package.as_str())?;
        o.set("service", m.service.as_str())?;
        o.set("full_method", m.path.as_str())?;
        o.set("name", m.name.as_str())?;
        o.set("is_client_stream", m.client_stream)?;
        o.set("is_server_stream", m.server_stream)?;
        out.set(i, o)?;
    }
    Ok(out)
}

/// Compiles a `load(paths, ...files)` once per worker.
fn load(shared: &Rc<Shared>, paths: &[String], files: &[String]) -> Result<Rc<Loaded>, String> {
    let g = &shared.grpc;
    // k6: no import paths means the script's folder.
    let dirs: Vec<PathBuf> = if paths.is_empty() {
        vec![g.resolve(".")]
    } else {
        paths.iter().map(|p| g.resolve(p)).collect()
    };
    let key = (
        dirs.iter().map(|d| d.display().to_string()).collect(),
        files.to_vec(),
    );
    if let Some(l) = g.loaded.borrow().get(&key) {
        return Ok(l.clone());
    }
    let resolver = ScriptFiles {
        dirs,
        shared: shared.clone(),
    };
    let set = ProtoSet::compile_with(resolver, files).map_err(|e| e.to_string())?;
    let loaded = Rc::new(Loaded::of(&set));
    g.loaded.borrow_mut().insert(key, loaded.clone());
    Ok(loaded)
}

/// Reads a `loadProtoset(path)` once per worker.
fn load_protoset(shared: &Rc<Shared>, path: &str) -> Result<Rc<Loaded>, String> {
    let g = &shared.grpc;
    let file = g.resolve(path).display().to_string();
    let key = (vec![PROTOSET_KEY_SUFFIX.to_string()], vec![file.clone()]);
    if let Some(l) = g.loaded.borrow().get(&key) {
        return Ok(l.clone());
    }
    let stored = format!("{file}{PROTOSET_KEY_SUFFIX}");
    let bytes = match &shared.files {
        Some(files) => {
            let bytes = files.get(&stored).ok_or_else(|| {
                format!("couldn't open protoset: {file} was not read when the test was loaded")
            })?;
            bytes.bytes().to_vec()
        }
        None => {
            let bytes = read_bounded(Path::new(&file))
                .map_err(|e| format!("couldn't open protoset: {e}"))?;
            shared
                .read
                .borrow_mut()
                .insert(stored, FileBytes::from(bytes.clone()));
            bytes
        }
    };
    let set = ProtoSet::from_descriptor_set(&bytes)
        .map_err(|e| format!("couldn't unmarshal protoset file {path}: {e}"))?;
    let loaded = Rc::new(Loaded::of(&set));
    g.loaded.borrow_mut().insert(key, loaded.clone());
    Ok(loaded)
}

/// A file of at most [`MAX_PROTO_FILE_BYTES`], or why not.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) => Err(format!("{shown}: {e}")),
        Ok(m) if !m.is_file() => Err(format!("{shown}: not a regular file")),
        Ok(m) if m.len() > MAX_PROTO_FILE_BYTES => Err(format!(
            "{shown}: {} bytes, more than the limit of {MAX_PROTO_FILE_BYTES}",
            m.len()
        )),
        Ok(_) => std::fs::read(path).map_err(|e| format!("{shown}: {e}")),
    }
}

/// protox's view of a script's import folders: the disk, each file read recorded (the
/// coordinator's init run), or the files shipped with the test (agents).
struct ScriptFiles {
    dirs: Vec<PathBuf>,
    shared: Rc<Shared>,
}

impl protox::file::FileResolver for ScriptFiles {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        for dir in &self.dirs {
            let path = normalize(&dir.join(name));
            let key = path.display().to_string();
            let text = match &self.shared.files {
                Some(files) => files.get(&key).cloned(),
                None => {
                    let known = self.shared.read.borrow().get(&key).cloned();
                    match known {
                        Some(t) => Some(t),
                        None if !path.exists() => None,
                        None => {
                            let bytes = read_bounded(&path).map_err(protox::Error::new)?;
                            let bytes = FileBytes::from(bytes);
                            self.shared
                                .read
                                .borrow_mut()
                                .insert(key.clone(), bytes.clone());
                            Some(bytes)
                        }
                    }
                }
            };
            if let Some(bytes) = text {
                let text = std::str::from_utf8(bytes.bytes())
                    .map_err(|_| protox::Error::new(format!("{key}: not UTF-8 text")))?;
                return protox::file::File::from_source(name, text);
            }
        }
        Err(protox::Error::file_not_found(name))
    }
}

/// `connect(address, params)` as k6 reads its params.
struct ConnectParams {
    plaintext: bool,
    reflect: bool,
    timeout: Duration,
    tls: Option<TlsParams>,
}

#[derive(Default)]
struct TlsParams {
    cert: Option<String>,
    key: Option<String>,
    cacerts: Vec<String>,
}

impl ConnectParams {
    fn read<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> Result<ConnectParams, String> {
        let mut p = ConnectParams {
            plaintext: false,
            reflect: false,
            timeout: CONNECT_TIMEOUT,
            tls: None,
        };
        let Some(o) = v.as_object() else {
            return Ok(p);
        };
        for kv in o.props::<String, Value>() {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            match k.as_str() {
                "plaintext" => p.plaintext = boolean(ctx, &k, &v)?,
                "reflect" => p.reflect = boolean(ctx, &k, &v)?,
                "timeout" => p.timeout = duration(ctx, &v)?,
                // Barrage shares one pool of connections per worker anyway.
                "connectionSharing" => {
                    boolean(ctx, &k, &v)?;
                }
                // Limits Barrage does not enforce: accepted, as k6 does, and ignored.
                "maxReceiveSize" | "maxSendSize" => {
                    if number(&v).is_none_or(|n| n < 0.0 || n.fract() != 0.0) {
                        return Err(format!(
                            "invalid {k} value: '{}', it needs to be a positive integer",
                            show(ctx, &v)
                        ));
                    }
                }
                "tls" => p.tls = Some(tls_params(ctx, &v)?),
                "reflectMetadata" | "authority" => {
                    return Err(format!(
                        "the connect param {k:?} is not supported by Barrage yet"
                    ));
                }
                _ => return Err(format!("unknown connect param: {k:?}")),
            }
        }
        Ok(p)
    }
}

fn tls_params<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> Result<TlsParams, String> {
    let Some(o) = v.as_object() else {
        return Err(format!(
            "invalid tls value: '{}', expected (optional) keys: cert, key, password, and cacerts",
            show(ctx, v)
        ));
    };
    let mut t = TlsParams::default();
    let pem = |k: &str, v: &Value<'js>| -> Result<String, String> {
        v.as_string()
            .and_then(|s| s.to_string().ok())
            .ok_or_else(|| format!("invalid tls {k} value: it needs to be a PEM formatted string"))
    };
    for kv in o.props::<String, Value>() {
        let (k, v) = kv.map_err(|e| e.to_string())?;
        match k.as_str() {
            "cert" => t.cert = Some(pem("cert", &v)?),
            "key" => t.key = Some(pem("key", &v)?),
            "password" if !pem("password", &v)?.is_empty() => {
                return Err(
                    "encrypted TLS keys (tls.password) are not supported by Barrage yet".into(),
                );
            }
            "cacerts" => {
                if let Some(a) = v.as_array() {
                    for c in a.iter::<Value>() {
                        let c = c.map_err(|e| e.to_string())?;
                        t.cacerts.push(pem("cacerts", &c)?);
                    }
                } else {
                    t.cacerts.push(pem("cacerts", &v)?);
                }
            }
            _ => {}
        }
    }
    Ok(t)
}

fn boolean<'js>(ctx: &Ctx<'js>, k: &str, v: &Value<'js>) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| {
        format!(
            "invalid {k} value: '{}', it needs to be boolean",
            show(ctx, v)
        )
    })
}

/// A k6 duration: milliseconds as a number, or a string such as `"10s"`.
fn duration<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> Result<Duration, String> {
    let bad = || format!("invalid timeout value: {}", show(ctx, v));
    if let Some(n) = number(v) {
        return Duration::try_from_secs_f64(n / 1e3).map_err(|_| bad());
    }
    if let Some(s) = v.as_string().and_then(|s| s.to_string().ok()) {
        return barrage_common::duration::parse_duration(&s)
            .map_err(|e| format!("invalid timeout value: {s:?}: {e}"));
    }
    Err(bad())
}

/// A JS number, stored as a float or an int.
fn number(v: &Value<'_>) -> Option<f64> {
    v.as_number().or_else(|| v.as_int().map(f64::from))
}

fn show<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> String {
    ctx.json_stringify(v.clone())
        .ok()
        .flatten()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| "?".into())
}

fn connect<'js>(
    ctx: &Ctx<'js>,
    h: &Rc<VuHost>,
    clients: &Clients,
    id: u32,
    addr: String,
    params: &Value<'js>,
) -> rquickjs::Result<bool> {
    if h.suspender.in_init() {
        return Err(throw(
            ctx,
            "connecting to a gRPC server in the init context is not supported",
        ));
    }
    let p = ConnectParams::read(ctx, params)
        .map_err(|m| throw(ctx, &format!("invalid grpc.connect() parameters: {m}")))?;
    let Some(w) = h.worker.clone() else {
        return Err(Exception::throw_internal(ctx, "no worker"));
    };
    let tls = match (p.plaintext, p.tls) {
        (true, _) => None,
        (false, t) => {
            let t = t.unwrap_or_default();
            Some(GrpcTls {
                ca_pem: (!t.cacerts.is_empty()).then(|| t.cacerts.join("\n").into_bytes()),
                insecure_skip_verify: h.shared.grpc.insecure_skip_verify,
                domain: None,
                client_cert_pem: t.cert.map(String::into_bytes),
                client_key_pem: t.key.map(String::into_bytes),
            })
        }
    };
    let client = w
        .grpc_client(&addr, tls.as_ref(), GRPC_CONNECTIONS_PER_WORKER)
        .map_err(|e| throw(ctx, &e.to_string()))?;
    // k6: a failed connect leaves the client without a connection.
    if let Some(c) = clients.list.borrow_mut().get_mut(id as usize) {
        c.conn = None;
    }
    let reflect_key = (addr.clone(), p.plaintext);
    let known = if p.reflect {
        h.shared.grpc.reflected.borrow().get(&reflect_key).cloned()
    } else {
        None
    };
    let ask_reflection = p.reflect && known.is_none();
    let timeout = p.timeout;
    let (c, target) = (client.clone(), addr.clone());
    let outcome = h.suspender.wait(ctx, "connect", async move {
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout(timeout, c.connect()).await {
            Err(_) => return Err("context deadline exceeded".to_string()),
            Ok(Err(status)) => {
                return Err(format!("connection error: desc = {:?}", status.message()));
            }
            Ok(Ok(())) => {}
        }
        if !ask_reflection {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        proto_set_from_reflection(&target, tls.as_ref(), left)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    })?;
    let reflected = match outcome {
        Ok(Some(set)) => {
            let l = Rc::new(Loaded::of(&set));
            h.shared
                .grpc
                .reflected
                .borrow_mut()
                .insert(reflect_key, l.clone());
            Some(l)
        }
        Ok(None) => known,
        Err(m) => return Err(throw(ctx, &m)),
    };
    let mut list = clients.list.borrow_mut();
    let Some(state) = list.get_mut(id as usize) else {
        return Err(Exception::throw_internal(ctx, "unknown gRPC client"));
    };
    if let Some(l) = reflected {
        for m in &l.methods {
            state.methods.insert(m.path.clone(), m.call.clone());
        }
    }
    state.conn = Some(Conn {
        client,
        addr,
        series: HashMap::new(),
    });
    Ok(true)
}

/// `invoke(method, request, params)` as k6 reads its params.
struct CallParams {
    metadata: Vec<(String, String)>,
    tags: Vec<(String, String)>,
    timeout: Duration,
    discard: bool,
}

impl CallParams {
    fn read<'js>(ctx: &Ctx<'js>, v: &Value<'js>) -> Result<CallParams, String> {
        let mut p = CallParams {
            metadata: Vec::new(),
            tags: Vec::new(),
            timeout: INVOKE_TIMEOUT,
            discard: false,
        };
        let Some(o) = v.as_object() else {
            return Ok(p);
        };
        for kv in o.props::<String, Value>() {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            match k.as_str() {
                "metadata" => p.metadata = metadata(&v)?,
                "tags" => p.tags = tag_pairs(ctx, &v).map_err(|e| format!("metric tags: {e}"))?,
                "timeout" => {
                    let t = duration(ctx, &v)?;
                    // k6: 0 is the default.
                    if !t.is_zero() {
                        p.timeout = t;
                    }
                }
                "discardResponseMessage" => p.discard = truthy(&v),
                _ => return Err(format!("unknown param: {k:?}")),
            }
        }
        Ok(p)
    }
}

fn truthy(v: &Value<'_>) -> bool {
    v.as_bool()
        .unwrap_or_else(|| !(v.is_undefined() || v.is_null()))
}

fn metadata(v: &Value<'_>) -> Result<Vec<(String, String)>, String> {
    let bad = || "invalid metadata param: must be an object with key-value pairs".to_string();
    if v.is_undefined() || v.is_null() {
        return Ok(Vec::new());
    }
    let o = v.as_object().ok_or_else(bad)?;
    let mut out = Vec::new();
    for kv in o.props::<String, Value>() {
        let (k, v) = kv.map_err(|e| e.to_string())?;
        // Binary (`-bin`) values as text too: Barrage sends their bytes as given.
        let value = match v.as_string() {
            Some(s) => s.to_string().map_err(|e| e.to_string())?,
            None => {
                return Err(format!(
                    "invalid metadata param: {k:?} value must be a string"
                ));
            }
        };
        out.push((k.to_ascii_lowercase(), value));
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn invoke<'js>(
    ctx: &Ctx<'js>,
    h: &Rc<VuHost>,
    clients: &Clients,
    kit: &Class<'js, Kit<'js>>,
    id: u32,
    method: &str,
    request: Value<'js>,
    params: &Value<'js>,
) -> rquickjs::Result<Value<'js>> {
    if h.suspender.in_init() {
        return Err(throw(
            ctx,
            "invoking RPC methods in the init context is not supported",
        ));
    }
    let (client, addr, m) = {
        let list = clients.list.borrow();
        let state = list.get(id as usize);
        let Some(conn) = state.and_then(|s| s.conn.as_ref()) else {
            return Err(throw(
                ctx,
                "no gRPC connection, you must call connect first",
            ));
        };
        if method.is_empty() {
            return Err(throw(ctx, "method to invoke cannot be empty"));
        }
        let path = if method.starts_with('/') {
            method.to_string()
        } else {
            format!("/{method}")
        };
        let found = state.and_then(|s| s.methods.get(&path));
        let m = match found {
            None => {
                return Err(throw(
                    ctx,
                    &format!("method {path:?} not found in file descriptors"),
                ));
            }
            Some(Err(why)) => return Err(throw(ctx, why)),
            Some(Ok(m)) => m.clone(),
        };
        (conn.client.clone(), conn.addr.clone(), m)
    };
    let p = CallParams::read(ctx, params).map_err(|m| {
        throw(
            ctx,
            &format!("invalid GRPC's client.invoke() parameters: {m}"),
        )
    })?;
    let proto = kit.borrow().object_prototype();
    let Some(json) = request_json(ctx, &proto, &request)? else {
        return Err(throw(ctx, "request cannot be nil"));
    };
    let message = request_message(&m.input(), &json).map_err(|e| {
        throw(
            ctx,
            &format!("unable to serialise request object to protocol buffer: {e}"),
        )
    })?;
    let Some(w) = h.worker.clone() else {
        return Err(Exception::throw_internal(ctx, "no worker"));
    };
    let call = m.clone();
    let CallParams {
        metadata,
        tags,
        timeout,
        discard,
    } = p;
    let (resp, took) = h.suspender.wait(ctx, "invoke", async move {
        let started = Instant::now();
        let resp = client.unary(&call, message, &metadata, Some(timeout)).await;
        (resp, started.elapsed())
    })?;
    record(h, &w, clients, id, &addr, &m, &tags, &resp, took);
    let mut resp = resp;
    if discard {
        // `discardResponseMessage`: the message is not kept with the response object.
        resp.message = None;
    }
    Response::make(
        kit,
        Data::Grpc {
            response: Box::new(resp),
            output: m.output(),
            discard,
        },
    )
}

/// The request object as the JSON `JSON.stringify` would give (`None` for what it gives
/// nothing for, and for undefined and null: `nil` to k6). Plain data (objects whose
/// prototype is `Object.prototype` or null, arrays, strings, numbers, booleans) is
/// walked natively, which spares every number its round trip through text; anything
/// else (a `toJSON`, a Date, a BigInt, a boxed primitive, nesting deeper than 32, so
/// cycles too) goes through `JSON.stringify` itself, with its errors.
fn request_json<'js>(
    ctx: &Ctx<'js>,
    object_prototype: &Object<'js>,
    v: &Value<'js>,
) -> rquickjs::Result<Option<serde_json::Value>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    if let Some(j) = plain_json(object_prototype, v, 0)? {
        return Ok(Some(j));
    }
    let Some(text) = ctx.json_stringify(v.clone())? else {
        return Ok(None);
    };
    serde_json::from_str(&text.to_string()?)
        .map(Some)
        .map_err(|e| {
            throw(
                ctx,
                &format!("unable to serialise request object to protocol buffer: {e}"),
            )
        })
}

/// `v` as JSON when it is plain data (see [`request_json`]); `None` otherwise.
fn plain_json<'js>(
    object_prototype: &Object<'js>,
    v: &Value<'js>,
    depth: usize,
) -> rquickjs::Result<Option<serde_json::Value>> {
    use rquickjs::Type;
    use serde_json::Value as J;
    if depth > 32 {
        return Ok(None);
    }
    // What JSON.stringify leaves out of an object and writes as null in an array.
    let skipped = |v: &Value<'js>| {
        matches!(
            v.type_of(),
            Type::Undefined | Type::Function | Type::Constructor | Type::Symbol
        )
    };
    Ok(Some(match v.type_of() {
        Type::Null => J::Null,
        Type::Bool => J::Bool(v.as_bool().unwrap_or(false)),
        Type::Int => J::from(v.as_int().unwrap_or(0)),
        Type::Float => {
            let f = v.as_float().unwrap_or(f64::NAN);
            // JSON.stringify writes an integral double below 2^53 as an integer.
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                J::from(f as i64)
            } else {
                serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
            }
        }
        Type::String => match v.as_string() {
            Some(s) => J::String(s.to_string()?),
            None => return Ok(None),
        },
        Type::Array => {
            let Some(a) = v.as_array() else {
                return Ok(None);
            };
            let mut out = Vec::with_capacity(a.len());
            for e in a.iter::<Value<'js>>() {
                let e = e?;
                if skipped(&e) {
                    out.push(J::Null);
                    continue;
                }
                match plain_json(object_prototype, &e, depth + 1)? {
                    Some(j) => out.push(j),
                    None => return Ok(None),
                }
            }
            J::Array(out)
        }
        Type::Object => {
            let Some(o) = v.as_object() else {
                return Ok(None);
            };
            if o.get_prototype().is_some_and(|p| p != *object_prototype)
                || o.contains_key("toJSON")?
            {
                return Ok(None);
            }
            let mut out = serde_json::Map::new();
            for kv in o.props::<String, Value<'js>>() {
                let (k, e) = kv?;
                if skipped(&e) {
                    continue;
                }
                match plain_json(object_prototype, &e, depth + 1)? {
                    Some(j) => {
                        out.insert(k, j);
                    }
                    None => return Ok(None),
                }
            }
            J::Object(out)
        }
        _ => return Ok(None),
    }))
}

/// The request message, or why not: naming the field whose value does not fit (as
/// k6's `invalid value for int64 field x: "abc"` does).
fn request_message(
    desc: &prost_reflect::MessageDescriptor,
    json: &serde_json::Value,
) -> Result<DynamicMessage, String> {
    json_to_message(desc, json).map_err(|e| match (&e, failing_field(desc, json)) {
        (crate::grpc::GrpcError::Json { .. }, Some((field, value))) => format!(
            "invalid value for field {field} of {}: {value} ({e})",
            desc.full_name()
        ),
        _ => e.to_string(),
    })
}

/// The path (`a.b`) and value of the first field that does not convert on its own.
fn failing_field(
    desc: &prost_reflect::MessageDescriptor,
    json: &serde_json::Value,
) -> Option<(String, String)> {
    let object = json.as_object()?;
    for (k, v) in object {
        let alone = serde_json::json!({ k.as_str(): v });
        if json_to_message(desc, &alone).is_ok() {
            continue;
        }
        let inner = desc
            .get_field_by_json_name(k)
            .or_else(|| desc.get_field_by_name(k))
            .and_then(|f| f.kind().as_message().cloned());
        return Some(match inner.and_then(|d| failing_field(&d, v)) {
            Some((path, value)) => (format!("{k}.{path}"), value),
            None => (k.clone(), v.to_string()),
        });
    }
    None
}

/// Records one call as the YAML engine does (`grpc_reqs`, `grpc_req_duration`, data
/// sent and received), with k6's tags: `name` (the method path, unless the call's tags
/// name it), `method`, `service`, `url`, `status`. Every call is timed: `connect()`
/// had a connection, and k6 times a call to a server that has gone since.
#[allow(clippy::too_many_arguments)]
fn record(
    h: &VuHost,
    w: &crate::worker::Worker,
    clients: &Clients,
    id: u32,
    addr: &str,
    m: &Method,
    user: &[(String, String)],
    resp: &GrpcResponse,
    took: Duration,
) {
    let code = resp.code as i32;
    let new_ids = || {
        let mut tags: Tags = h.tags(user);
        if !user.iter().any(|(k, _)| k == "name") {
            tags.insert("name", m.path().to_string());
        }
        let (service, method) = m.full_name().split_once('/').unwrap_or(("", m.full_name()));
        tags.insert("method", method.to_string());
        tags.insert("service", service.to_string());
        tags.insert("url", format!("{addr}{}", m.path()));
        tags.insert("status", code.to_string());
        (
            w.series(&builtin_def(builtin::GRPC_REQS), &tags),
            w.series(&builtin_def(builtin::GRPC_REQ_DURATION), &tags),
        )
    };
    let (reqs, duration) = if user.is_empty() {
        let key = (m.path().to_string(), code, h.group.borrow().clone());
        let cached = clients
            .list
            .borrow()
            .get(id as usize)
            .and_then(|s| s.conn.as_ref())
            .and_then(|c| c.series.get(&key).copied());
        match cached {
            Some(ids) => ids,
            None => {
                let ids = new_ids();
                if let Some(c) = clients
                    .list
                    .borrow_mut()
                    .get_mut(id as usize)
                    .and_then(|s| s.conn.as_mut())
                {
                    c.series.insert(key, ids);
                }
                ids
            }
        }
    } else {
        new_ids()
    };
    let (sent, received) = match clients.data.get() {
        Some(ids) => ids,
        None => {
            let scenario: Vec<(&str, &str)> = h
                .scenario
                .tags
                .iter()
                .filter(|(k, _)| *k == "scenario")
                .collect();
            let data = Tags::from_pairs(scenario);
            let ids = (
                w.series(&builtin_def(builtin::DATA_SENT), &data),
                w.series(&builtin_def(builtin::DATA_RECEIVED), &data),
            );
            clients.data.set(Some(ids));
            ids
        }
    };
    let mut rec = w.recorder.borrow_mut();
    rec.add(reqs, 1.0);
    rec.add(duration, took.as_secs_f64() * 1e3);
    rec.add(sent, resp.bytes_sent as f64);
    rec.add(received, resp.bytes_received as f64);
    if resp.code != tonic::Code::Ok {
        let mut tags = h.tags(user);
        if !user.iter().any(|(k, _)| k == "name") {
            tags.insert("name", m.path().to_string());
        }
        resp.record_failure(&mut rec, &tags, &format!("{addr}{}", m.path()));
    }
}
