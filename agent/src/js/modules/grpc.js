// k6/net/grpc: the Client over barrage:host's grpc* natives (agent/src/js/grpc.rs),
// which keep each client's protos and connection; a response is a native object in
// k6's shape (protojson: int64 fields as strings).
import * as host from 'barrage:host';

// What every gRPC response shares (its keys), made once per VU; a response is a
// native object (`js/response.rs`) whose fields are built when read.
const KIT = host.grpcKit();

// k6's names (StatusCanceled with one l, as k6 spells it).
export const StatusOK = 0;
export const StatusCanceled = 1;
export const StatusUnknown = 2;
export const StatusInvalidArgument = 3;
export const StatusDeadlineExceeded = 4;
export const StatusNotFound = 5;
export const StatusAlreadyExists = 6;
export const StatusPermissionDenied = 7;
export const StatusResourceExhausted = 8;
export const StatusFailedPrecondition = 9;
export const StatusAborted = 10;
export const StatusOutOfRange = 11;
export const StatusUnimplemented = 12;
export const StatusInternal = 13;
export const StatusUnavailable = 14;
export const StatusDataLoss = 15;
export const StatusUnauthenticated = 16;

export class Client {
  constructor() {
    Object.defineProperty(this, '__id', { value: host.grpcNew() });
  }

  load(importPaths, ...protoFiles) {
    const paths = importPaths === undefined || importPaths === null ? [] : importPaths;
    if (!Array.isArray(paths)) {
      throw new TypeError('load: the import paths must be an array of strings (or null)');
    }
    return host.grpcLoad(this.__id, paths.map(String), protoFiles.map(String));
  }

  loadProtoset(path) {
    return host.grpcLoadProtoset(this.__id, String(path));
  }

  connect(address, params) {
    return host.grpcConnect(this.__id, String(address), params);
  }

  invoke(method, request, params) {
    // The request as given: the native half makes it JSON (as JSON.stringify would)
    // after the checks k6 makes first (connection, method), and says so when missing.
    return host.grpcInvoke(KIT, this.__id, String(method), request, params);
  }

  asyncInvoke(method, request, params) {
    // The call is made at once (the VU waits for it); the promise carries its outcome.
    try {
      return Promise.resolve(this.invoke(method, request, params));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  healthCheck() {
    throw new Error('grpc.Client.healthCheck is not supported by Barrage yet');
  }

  close() {
    host.grpcClose(this.__id);
  }
}

export class Stream {
  constructor() {
    throw new Error('grpc.Stream (streaming RPCs) is not supported by Barrage yet; only unary invoke');
  }
}

export default {
  Client, Stream,
  StatusOK, StatusCanceled, StatusUnknown, StatusInvalidArgument, StatusDeadlineExceeded,
  StatusNotFound, StatusAlreadyExists, StatusPermissionDenied, StatusResourceExhausted,
  StatusFailedPrecondition, StatusAborted, StatusOutOfRange, StatusUnimplemented,
  StatusInternal, StatusUnavailable, StatusDataLoss, StatusUnauthenticated,
};
