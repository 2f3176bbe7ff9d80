// The Adder's gRPC client, shared by the scripts (SPEC.md: sumflow's Adder,
// sum.SumNumbersService/SumNumbers).
import grpc from 'k6/net/grpc';

export const ADDER_ADDR = __ENV.ADDER_ADDR || 'localhost:50051';
export const SUM_NUMBERS = 'sum.SumNumbersService/SumNumbers';

// A gRPC client with sum.proto loaded. Init context only (k6 loads protos there).
// k6 resolves load()'s import paths against the folder of the script being run
// (k6/scripts/), not of this module, so '../../proto' is the repository's proto/
// (the same folder from here, as k6/lib is as deep as k6/scripts).
export function newAdderClient() {
  const client = new grpc.Client();
  client.load(['../../proto'], 'sum.proto');
  return client;
}

// One SumNumbers call on a connection of its own, as the seed's tests do:
// connect, invoke, close. Returns k6's response ({status, message, error, ...});
// int64 fields of message (sum, offset) are strings, as k6 hands them to scripts.
// k6's connect throws when the Adder cannot be reached; that is returned as an
// UNAVAILABLE response instead (as the YAML engine reports it), so that the
// scripts' checks and error counters see the failure rather than the iteration
// ending with nothing counted (and the thresholds passing on no data).
export function sumNumbers(client, x, y) {
  try {
    client.connect(ADDER_ADDR, { plaintext: true });
  } catch (e) {
    return { status: grpc.StatusUnavailable, message: null, error: { message: String(e) } };
  }
  try {
    return client.invoke(SUM_NUMBERS, { x: x, y: y });
  } finally {
    client.close();
  }
}

// A random integer in [min, max], both included.
export function randomInt(min, max) {
  return Math.floor(Math.random() * (max - min + 1)) + min;
}
