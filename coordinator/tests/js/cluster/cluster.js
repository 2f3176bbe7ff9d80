// One script over several agents (js_cluster.rs): setup() asks the target for a token
// once, every VU of every agent sends it back with each iteration's numbers, an HTTP
// request and a gRPC call per iteration, teardown(data) hands the token back once, and
// handleSummary writes the merged counts for the test to compare with the target's.
import http from 'k6/http';
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import exec from 'k6/execution';

const client = new grpc.Client();
client.load(['../proto'], 'sum.proto');

const TARGET = __ENV.TARGET;
const ADDR = __ENV.ADDER_ADDR;

const scenarios = {
  // A fixed count: iterationInTest must be 0..N-1 over all agents.
  exact: {
    executor: 'shared-iterations',
    vus: 6,
    iterations: Number(__ENV.ITERATIONS || 300),
    maxDuration: '60s',
  },
  // A steady rate for as long as it takes to lose an agent and hand its share over.
  loss: {
    executor: 'constant-arrival-rate',
    rate: 40,
    timeUnit: '1s',
    duration: '8s',
    preAllocatedVUs: 6,
    maxVUs: 30,
  },
};

export const options = {
  scenarios: { [__ENV.MODE]: scenarios[__ENV.MODE] },
  setupTimeout: '20s',
  teardownTimeout: '20s',
};

export function setup() {
  const r = http.get(`${TARGET}/setup`);
  check(r, { 'setup answered': (r) => r.status === 200 });
  // What k6 ships is Go's JSON of the value: a Date as RFC 3339, undefined as null.
  return { token: r.json('token'), at: new Date(0), list: [1, undefined] };
}

let connected = false;

export default function (data) {
  const q = `i=${exec.scenario.iterationInTest}&vu=${exec.vu.idInTest}` +
    `&vu_local=${exec.vu.idInInstance}&token=${data.token}`;
  const r = http.get(`${TARGET}/iter?${q}`);
  check(r, { 'iteration answered': (r) => r.status === 200 });
  check(data, {
    'data as k6 ships it': (d) => d.at === '1970-01-01T00:00:00Z' && d.list[1] === null,
  });
  if (!connected) {
    client.connect(ADDR, { plaintext: true });
    connected = true;
  }
  const s = client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, y: 2 });
  check(s, { 'sum is 3': (s) => s && s.status === grpc.StatusOK && Number(s.message.sum) === 3 });
}

export function teardown(data) {
  http.get(`${TARGET}/teardown?token=${data.token}`);
}

export function handleSummary(data) {
  const count = (m) => (data.metrics[m] ? data.metrics[m].values.count : 0);
  return {
    [__ENV.SUMMARY]: JSON.stringify({
      http_reqs: count('http_reqs'),
      grpc_reqs: count('grpc_reqs'),
      iterations: count('iterations'),
      setup_data: data.setup_data,
    }),
  };
}
