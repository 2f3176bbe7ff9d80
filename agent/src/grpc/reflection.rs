//! Descriptors from a server's reflection service (grpc.reflection.v1, falling back to
//! v1alpha), for targets whose .proto files the user does not have.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use prost::Message as _;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;

use super::client::GrpcClient;
use super::{GrpcError, GrpcTls, ProtoSet};

/// Asks the reflection service of `addr` for every service it lists and the files that
/// define them (with their imports), all within `timeout`.
///
/// Fails when the target is unreachable, has no reflection service (neither v1 nor
/// v1alpha), answers with an error, or returns descriptors that do not link.
pub async fn proto_set_from_reflection(
    addr: &str,
    tls: Option<&GrpcTls>,
    timeout: Duration,
) -> Result<ProtoSet, GrpcError> {
    let client = GrpcClient::new(addr, tls)?;
    let fail = |reason: String| GrpcError::Reflection {
        addr: addr.to_owned(),
        reason,
    };
    let files = tokio::time::timeout(timeout, fetch_files(&client))
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))?
        .map_err(fail)?;
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files.into_values())
        .map_err(|e| fail(format!("descriptors do not link: {e}")))?;
    Ok(ProtoSet { pool })
}

async fn fetch_files(client: &GrpcClient) -> Result<BTreeMap<String, FileDescriptorProto>, String> {
    match v1::fetch(client).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => v1alpha::fetch(client)
            .await
            .map_err(|s| format!("v1alpha: {}: {}", super::code_name(s.code()), s.message()))
            .and_then(|files| files),
        Err(status) => Err(format!(
            "{}: {}",
            super::code_name(status.code()),
            status.message()
        )),
        Ok(Err(reason)) => Err(reason),
        Ok(Ok(files)) => Ok(files),
    }
}

/// Decodes `FileDescriptorProto`s into `files`, queueing imports not seen yet.
fn collect(
    encoded: Vec<Vec<u8>>,
    files: &mut BTreeMap<String, FileDescriptorProto>,
    wanted: &mut VecDeque<String>,
) -> Result<(), String> {
    for bytes in encoded {
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| format!("undecodable FileDescriptorProto: {e}"))?;
        for dependency in &file.dependency {
            if !files.contains_key(dependency) && !wanted.contains(dependency) {
                wanted.push_back(dependency.clone());
            }
        }
        files.insert(file.name().to_owned(), file);
    }
    Ok(())
}

/// The same exchange for both protocol versions, whose generated types differ only by
/// module.
macro_rules! reflection_version {
    ($version:ident, $($pb:ident)::+) => {
        mod $version {
            use std::collections::{BTreeMap, VecDeque};

            use prost_types::FileDescriptorProto;
            use $($pb)::+ as pb;
            use pb::server_reflection_client::ServerReflectionClient;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;

            use crate::grpc::client::GrpcClient;
            use crate::grpc::connection::H2Service;

            /// `Err(status)` when the call itself fails (UNIMPLEMENTED: no such version),
            /// `Ok(Err(reason))` when the answers are unusable.
            pub(super) async fn fetch(
                client: &GrpcClient,
            ) -> Result<Result<BTreeMap<String, FileDescriptorProto>, String>, tonic::Status> {
                let service = client.service().await?;
                let mut reflection = ServerReflectionClient::with_origin(service, client.origin().clone());

                let services = match ask(&mut reflection, MessageRequest::ListServices(String::new())).await? {
                    MessageResponse::ListServicesResponse(list) => list.service,
                    other => return Ok(Err(unexpected(&other))),
                };
                let mut files = BTreeMap::new();
                let mut wanted = VecDeque::new();
                for service in services {
                    if service.name.starts_with("grpc.reflection.") {
                        continue;
                    }
                    match ask(&mut reflection, MessageRequest::FileContainingSymbol(service.name.clone())).await? {
                        MessageResponse::FileDescriptorResponse(found) => {
                            if let Err(reason) = super::collect(found.file_descriptor_proto, &mut files, &mut wanted) {
                                return Ok(Err(reason));
                            }
                        }
                        other => return Ok(Err(format!("service {}: {}", service.name, unexpected(&other)))),
                    }
                }
                while let Some(name) = wanted.pop_front() {
                    if files.contains_key(&name) {
                        continue;
                    }
                    match ask(&mut reflection, MessageRequest::FileByFilename(name.clone())).await? {
                        MessageResponse::FileDescriptorResponse(found) => {
                            if let Err(reason) = super::collect(found.file_descriptor_proto, &mut files, &mut wanted) {
                                return Ok(Err(reason));
                            }
                        }
                        other => return Ok(Err(format!("file {name}: {}", unexpected(&other)))),
                    }
                }
                Ok(Ok(files))
            }

            /// One request on its own stream: simple, and the server keeps no state.
            async fn ask(
                reflection: &mut ServerReflectionClient<H2Service>,
                request: MessageRequest,
            ) -> Result<MessageResponse, tonic::Status> {
                let request = pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                };
                let mut answers = reflection
                    .server_reflection_info(futures::stream::iter([request]))
                    .await?
                    .into_inner();
                let answer = answers
                    .message()
                    .await?
                    .ok_or_else(|| tonic::Status::unknown("reflection stream ended without an answer"))?;
                answer
                    .message_response
                    .ok_or_else(|| tonic::Status::unknown("reflection answer without a response"))
            }

            fn unexpected(response: &MessageResponse) -> String {
                match response {
                    MessageResponse::ErrorResponse(e) => format!(
                        "server error {}: {}",
                        crate::grpc::code_name(tonic::Code::from_i32(e.error_code)),
                        e.error_message
                    ),
                    _ => "unexpected kind of answer".to_owned(),
                }
            }
        }
    };
}

reflection_version!(v1, tonic_reflection::pb::v1);
reflection_version!(v1alpha, tonic_reflection::pb::v1alpha);
