//! Dynamic gRPC: calls any unary method of any .proto at run time, like k6's
//! `client.load()` + `client.invoke()` or ghz.
//!
//! - [`ProtoSet`] compiles the user's .proto files with protox (pure Rust, no protoc), or
//!   takes an encoded `FileDescriptorSet` (what a coordinator ships to its agents), or asks
//!   a server's reflection service ([`proto_set_from_reflection`]).
//! - [`json_to_message`] / [`message_to_json`] convert between JSON-shaped values (what
//!   flows and checks handle) and [`DynamicMessage`]s.
//! - [`GrpcClient`] holds HTTP/2 connections to one target and makes unary calls whose
//!   failures come back as gRPC status codes, never as `Err`.
//!
//! # Layout
//! - this file: [`ProtoSet`], [`Method`], JSON to message and back, status code names.
//! - `client`: [`GrpcClient`]'s unary calls: request framing, reading the response
//!   and its trailers, gRPC status mapping.
//! - `connection`: target addresses, [`GrpcTls`], dialing (TCP, TLS, HTTP/2) and the
//!   pool of connections a client spreads its calls over.
//! - `reflection`: descriptors from a server's reflection service.

mod client;
mod connection;
mod reflection;

use std::path::PathBuf;

use http::uri::PathAndQuery;
use miette::Diagnostic;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor,
    ReflectMessage, SerializeOptions,
};

pub use client::{GrpcClient, GrpcResponse, header_pairs};
pub use connection::GrpcTls;
pub use reflection::proto_set_from_reflection;

/// Errors of the gRPC module: loading descriptors, resolving methods, converting JSON and
/// configuring clients. RPC failures are not errors: they are [`GrpcResponse`] codes.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// A .proto file does not compile; `message` has protox's reason with line and column.
    #[error("cannot compile {file}: {message}")]
    Compile {
        /// The file as given by the user.
        file: String,
        /// What protox said, prefixed with `path:line:column` when known.
        message: String,
    },
    /// The bytes are not a valid encoded `FileDescriptorSet`.
    #[error("invalid FileDescriptorSet: {reason}")]
    DescriptorSet {
        /// The decoder's or the linker's reason.
        reason: String,
    },
    /// The method name is not of the form `package.Service/Method`.
    #[error("malformed method name {name:?}: expected \"package.Service/Method\"")]
    MalformedMethodName {
        /// The name as given.
        name: String,
    },
    /// No service of that name in the loaded protos.
    #[error("unknown service {service:?}; loaded services: [{}]", available.join(", "))]
    UnknownService {
        /// The service asked for.
        service: String,
        /// The services that exist.
        available: Vec<String>,
    },
    /// The service has no method of that name.
    #[error("service {service} has no method {method:?}; its methods: [{}]", available.join(", "))]
    UnknownMethod {
        /// The service (full name).
        service: String,
        /// The method asked for.
        method: String,
        /// The service's methods.
        available: Vec<String>,
    },
    /// Client, server or bidirectional streaming methods cannot be called yet.
    #[error("{method} is a {kind} method: streaming is not supported yet, only unary calls")]
    StreamingNotSupported {
        /// `package.Service/Method`.
        method: String,
        /// `"client-streaming"`, `"server-streaming"` or `"bidirectional-streaming"`.
        kind: &'static str,
    },
    /// A JSON object has a key that is no field of its message type.
    #[error("unknown field {field:?} in message {message_type}")]
    UnknownField {
        /// The offending key.
        field: String,
        /// The full name of the message type that lacks it.
        message_type: String,
    },
    /// A JSON value does not fit its message type (wrong type, out of range, ...).
    #[error("invalid JSON for message {message_type}: {reason}")]
    Json {
        /// The full name of the top-level message type.
        message_type: String,
        /// The deserializer's reason (names the field).
        reason: String,
    },
    /// The target address cannot be parsed.
    #[error("invalid gRPC address {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// What is wrong with it and the expected form.
        reason: String,
    },
    /// The TLS options cannot be turned into a client configuration.
    #[error("invalid gRPC TLS configuration: {reason}")]
    Tls {
        /// Which PEM or option, and what rustls said.
        reason: String,
    },
    /// Server reflection failed (unreachable, unsupported, or bad descriptors).
    #[error("server reflection on {addr} failed: {reason}")]
    Reflection {
        /// The target asked.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Compiled descriptors of the user's .proto files; cheap to clone (shared pool).
#[derive(Clone, Debug)]
pub struct ProtoSet {
    pool: DescriptorPool,
}

impl ProtoSet {
    /// Compiles `files` (paths relative to one of `import_paths`, or under one of them) with
    /// protox; `google/protobuf/*.proto` imports are built in.
    ///
    /// Fails on the first file that does not compile, with the file and protox's message
    /// with line and column.
    pub fn compile(import_paths: &[PathBuf], files: &[String]) -> Result<Self, GrpcError> {
        let mut resolver = protox::file::ChainFileResolver::new();
        for path in import_paths {
            resolver.add(BoundedFiles {
                include: path.clone(),
                inner: protox::file::IncludeFileResolver::new(path.clone()),
            });
        }
        Self::compile_with(resolver, files)
    }

    /// Compiles `files` with protox, reading them and their imports through `resolver`
    /// (a k6 script's files come from memory on agents); `google/protobuf/*.proto`
    /// imports are built in.
    ///
    /// Fails on the first file that does not compile, as [`ProtoSet::compile`].
    pub fn compile_with(
        resolver: impl protox::file::FileResolver + 'static,
        files: &[String],
    ) -> Result<Self, GrpcError> {
        let mut chain = protox::file::ChainFileResolver::new();
        chain.add(resolver);
        chain.add(protox::file::GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(chain);
        compiler.include_imports(true);
        for file in files {
            compiler.open_file(file).map_err(|e| GrpcError::Compile {
                file: file.clone(),
                message: describe_protox_error(&e),
            })?;
        }
        Ok(Self {
            pool: compiler.descriptor_pool(),
        })
    }

    /// Loads an encoded `FileDescriptorSet` (as made by [`ProtoSet::descriptor_set_bytes`],
    /// `protoc --include_imports -o`, or `buf build`).
    ///
    /// Fails when the bytes do not decode or a file references a type that is not in the set.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, GrpcError> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| GrpcError::DescriptorSet {
            reason: e.to_string(),
        })?;
        Ok(Self { pool })
    }

    /// The encoded `FileDescriptorSet` of every file, imports included.
    pub fn descriptor_set_bytes(&self) -> Vec<u8> {
        self.pool.encode_to_vec()
    }

    /// The underlying descriptor pool.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Full names of every service, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pool
            .services()
            .map(|s| s.full_name().to_owned())
            .collect();
        names.sort();
        names
    }

    /// Resolves `"package.Service/Method"` (a leading `/` is accepted).
    ///
    /// Fails on a malformed name, an unknown service (the error lists those that exist), an
    /// unknown method (the error lists the service's methods) or a streaming method.
    pub fn method(&self, full_name: &str) -> Result<Method, GrpcError> {
        let trimmed = full_name.strip_prefix('/').unwrap_or(full_name);
        let malformed = || GrpcError::MalformedMethodName {
            name: full_name.to_owned(),
        };
        let (service_name, method_name) = trimmed.split_once('/').ok_or_else(malformed)?;
        if service_name.is_empty() || method_name.is_empty() || method_name.contains('/') {
            return Err(malformed());
        }
        let service = self.pool.get_service_by_name(service_name).ok_or_else(|| {
            GrpcError::UnknownService {
                service: service_name.to_owned(),
                available: self.services(),
            }
        })?;
        let desc = service
            .methods()
            .find(|m| m.name() == method_name)
            .ok_or_else(|| GrpcError::UnknownMethod {
                service: service.full_name().to_owned(),
                method: method_name.to_owned(),
                available: service.methods().map(|m| m.name().to_owned()).collect(),
            })?;
        let kind = match (desc.is_client_streaming(), desc.is_server_streaming()) {
            (false, false) => None,
            (true, false) => Some("client-streaming"),
            (false, true) => Some("server-streaming"),
            (true, true) => Some("bidirectional-streaming"),
        };
        let path = format!("/{}/{}", service.full_name(), desc.name());
        if let Some(kind) = kind {
            return Err(GrpcError::StreamingNotSupported {
                method: path[1..].to_owned(),
                kind,
            });
        }
        let path = PathAndQuery::from_maybe_shared(bytes::Bytes::from(path)).map_err(|_| {
            GrpcError::MalformedMethodName {
                name: full_name.to_owned(),
            }
        })?;
        Ok(Method {
            input: desc.input(),
            output: desc.output(),
            desc,
            path,
        })
    }
}

/// `path:line:column: message` for a protox error, from its diagnostic labels.
fn describe_protox_error(err: &protox::Error) -> String {
    let message = err.to_string();
    let location = err.labels().and_then(|mut labels| {
        let label = labels.next()?;
        let source = err.source_code()?;
        let span = source.read_span(label.inner(), 0, 0).ok()?;
        Some((span.line() + 1, span.column() + 1))
    });
    match (err.file(), location) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {message}"),
        (Some(file), None) if !message.contains(file) => format!("{file}: {message}"),
        _ => message,
    }
}

/// A resolved unary method; cheap to clone.
#[derive(Clone, Debug)]
pub struct Method {
    desc: MethodDescriptor,
    input: MessageDescriptor,
    output: MessageDescriptor,
    /// `/package.Service/Method`, built once so calls do not format it.
    path: PathAndQuery,
}

impl Method {
    /// `package.Service/Method`.
    pub fn full_name(&self) -> &str {
        &self.path.as_str()[1..]
    }

    /// The HTTP/2 path, `/package.Service/Method`.
    pub fn path(&self) -> &str {
        self.path.as_str()
    }

    /// The request message type.
    pub fn input(&self) -> MessageDescriptor {
        self.input.clone()
    }

    /// The response message type.
    pub fn output(&self) -> MessageDescriptor {
        self.output.clone()
    }

    /// The method descriptor.
    pub fn descriptor(&self) -> &MethodDescriptor {
        &self.desc
    }

    pub(crate) fn path_and_query(&self) -> &PathAndQuery {
        &self.path
    }

    pub(crate) fn output_ref(&self) -> &MessageDescriptor {
        &self.output
    }
}

/// Converts a JSON-shaped value into a message of type `desc`, with the proto3 JSON mapping:
/// fields by JSON (camelCase) or proto name, 64-bit integers as JSON numbers or strings,
/// enums by name or number.
///
/// Fails on an unknown field (naming the field and the message type that lacks it) or a
/// value of the wrong type.
pub fn json_to_message(
    desc: &MessageDescriptor,
    v: &serde_json::Value,
) -> Result<DynamicMessage, GrpcError> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    DynamicMessage::deserialize_with_options(desc.clone(), v, &options).map_err(|e| {
        if let Some((field, message_type)) = find_unknown_field(desc, v) {
            return GrpcError::UnknownField {
                field,
                message_type,
            };
        }
        GrpcError::Json {
            message_type: desc.full_name().to_owned(),
            reason: e.to_string(),
        }
    })
}

/// The first key of `v` (searched depth first) that is no field of its message type, with
/// that type's full name. Only used to explain a failed conversion.
fn find_unknown_field(desc: &MessageDescriptor, v: &serde_json::Value) -> Option<(String, String)> {
    let object = v.as_object()?;
    // Well-known types have their own JSON forms (Timestamp as a string, Struct as any
    // object...): their keys are not fields.
    if desc.full_name().starts_with("google.protobuf.") {
        return None;
    }
    for (key, value) in object {
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            return Some((key.clone(), desc.full_name().to_owned()));
        };
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        let found = if field.is_map() {
            match inner.map_entry_value_field().kind() {
                Kind::Message(value_desc) => value
                    .as_object()
                    .and_then(|m| m.values().find_map(|v| find_unknown_field(&value_desc, v))),
                _ => None,
            }
        } else if field.is_list() {
            value
                .as_array()
                .and_then(|items| items.iter().find_map(|v| find_unknown_field(&inner, v)))
        } else {
            find_unknown_field(&inner, value)
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Converts a message to JSON the way k6 shows gRPC responses, except that 64-bit integers
/// are JSON numbers (so `message.sum == x + y` compares numbers): field JSON names
/// (camelCase), enum names, and every field present even at its default value (so
/// `message.sum == 0` works); an unset message field is `null`, an unset oneof is absent.
pub fn message_to_json(m: &DynamicMessage) -> serde_json::Value {
    message_json(m, false)
}

/// Converts a message to JSON exactly as k6 hands gRPC responses to scripts (protojson
/// with `EmitUnpopulated`): like [`message_to_json`], but 64-bit integers are strings,
/// k6's quirk (`message.sum === x + y` is false there).
pub fn message_to_k6_json(m: &DynamicMessage) -> serde_json::Value {
    message_json(m, true)
}

/// Every field present (defaults included), unset messages `null`; 64-bit integers as
/// strings when `int64_strings`.
fn message_json(m: &DynamicMessage, int64_strings: bool) -> serde_json::Value {
    let options = SerializeOptions::new()
        .stringify_64_bit_integers(int64_strings)
        .skip_default_fields(false);
    // Serializing into a `Value` only fails for non-string map keys, which prost-reflect
    // never produces; keep the message visible as null rather than panic.
    let mut json = m
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(serde_json::Value::Null);
    fill_unset_messages(&m.descriptor(), &mut json);
    json
}

/// The response as an expression value: what `json_to_value(&message_to_json(m))` gives,
/// built directly for messages of plain scalar fields (the usual load-test reply), through
/// JSON otherwise.
pub fn message_to_value(m: &DynamicMessage) -> cel::Value {
    direct_value(m).unwrap_or_else(|| crate::expr::json_to_value(&message_to_json(m)))
}

/// `None` when the message has anything but singular scalar, string and enum fields
/// (or a non-finite float, which JSON spells as a string).
fn direct_value(m: &DynamicMessage) -> Option<cel::Value> {
    use prost_reflect::Value as P;
    let desc = m.descriptor();
    if desc.oneofs().next().is_some() || desc.full_name().starts_with("google.protobuf.") {
        return None;
    }
    let mut map = std::collections::HashMap::with_capacity(desc.fields().len());
    for field in desc.fields() {
        if field.is_list() || field.is_map() {
            return None;
        }
        let value = match &*m.get_field(&field) {
            P::Bool(b) => cel::Value::Bool(*b),
            P::I32(i) => cel::Value::Int(i64::from(*i)),
            P::I64(i) => cel::Value::Int(*i),
            P::U32(u) => cel::Value::Int(i64::from(*u)),
            P::U64(u) => i64::try_from(*u).map_or(cel::Value::UInt(*u), cel::Value::Int),
            P::F32(f) if f.is_finite() => cel::Value::Float(f64::from(*f)),
            P::F64(f) if f.is_finite() => cel::Value::Float(*f),
            P::String(s) => cel::Value::String(std::sync::Arc::new(s.clone())),
            P::EnumNumber(n) => match field.kind().as_enum().and_then(|e| e.get_value(*n)) {
                Some(v) => cel::Value::String(std::sync::Arc::new(v.name().to_owned())),
                None => cel::Value::Int(i64::from(*n)),
            },
            _ => return None,
        };
        map.insert(cel::objects::Key::from(field.json_name()), value);
    }
    Some(cel::Value::Map(cel::objects::Map {
        map: std::sync::Arc::new(map),
    }))
}

/// Adds `null` for unset singular message fields, which prost-reflect leaves out even
/// with default fields on, as protojson's `EmitUnpopulated` (k6) shows them; oneof members
/// stay out, as there.
fn fill_unset_messages(desc: &MessageDescriptor, json: &mut serde_json::Value) {
    let Some(object) = json.as_object_mut() else {
        return;
    };
    if desc.full_name().starts_with("google.protobuf.") {
        return;
    }
    for field in desc.fields() {
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_list() || field.is_map() || field.containing_oneof().is_some() {
            continue;
        }
        match object.get_mut(field.json_name()) {
            Some(value) => fill_unset_messages(&inner, value),
            None => {
                object.insert(field.json_name().to_owned(), serde_json::Value::Null);
            }
        }
    }
}

/// Encodes a message (its protobuf wire form, without gRPC framing).
pub fn encode_message(m: &DynamicMessage) -> Vec<u8> {
    m.encode_to_vec()
}

/// The gRPC status names as k6 and grpc-go spell them: `"OK"`, `"UNAVAILABLE"`, ...
pub fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code;
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The code named `name` (as [`code_name`] spells it; case-insensitive), if any.
pub fn code_from_name(name: &str) -> Option<tonic::Code> {
    use tonic::Code;
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];
    ALL.into_iter()
        .find(|c| code_name(*c).eq_ignore_ascii_case(name))
}

/// Largest .proto file read (an import of `/dev/zero` must fail at once, not after
/// reading gigabytes).
pub const MAX_PROTO_FILE_BYTES: u64 = 16 << 20;

/// An include path whose files are read only if they are regular files of at most
/// [`MAX_PROTO_FILE_BYTES`] (imports too: protox asks the resolver for each).
struct BoundedFiles {
    include: PathBuf,
    inner: protox::file::IncludeFileResolver,
}

impl protox::file::FileResolver for BoundedFiles {
    fn resolve_path(&self, path: &std::path::Path) -> Option<String> {
        self.inner.resolve_path(path)
    }

    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        // Where IncludeFileResolver reads it from.
        let path = self.include.join(name);
        match std::fs::metadata(&path) {
            Err(_) => Err(protox::Error::file_not_found(name)),
            Ok(m) if !m.is_file() => Err(protox::Error::new(format!(
                "{}: not a regular file",
                path.display()
            ))),
            Ok(m) if m.len() > MAX_PROTO_FILE_BYTES => Err(protox::Error::new(format!(
                "{}: {} bytes, more than the limit of {MAX_PROTO_FILE_BYTES}",
                path.display(),
                m.len()
            ))),
            Ok(_) => self.inner.open_file(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_round_trip() {
        for i in 0..17 {
            let code = tonic::Code::from_i32(i);
            assert_eq!(code_from_name(code_name(code)), Some(code));
        }
        assert_eq!(
            code_from_name("unavailable"),
            Some(tonic::Code::Unavailable)
        );
        assert_eq!(code_from_name("NOPE"), None);
    }
}
