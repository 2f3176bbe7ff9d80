// Connects once per VU; the test stops the server part way. k6 1.1 returns the later
// calls as status 14 (UNAVAILABLE) and times them; no iteration throws (js_grpc.rs).
import grpc from 'k6/net/grpc';
import { check, sleep } from 'k6';

const client = new grpc.Client();
client.load(['../proto'], 'sum.proto');

export const options = {
  summaryTrendStats: ['avg', 'max', 'count'],
  thresholds: {
    'grpc_req_duration{status:0}': ['max>=0'],
    'grpc_req_duration{status:14}': ['max>=0'],
  },
  scenarios: {
    s: { executor: 'per-vu-iterations', vus: 1, iterations: 60, maxDuration: '60s' },
  },
};

let connected = false;
export default function () {
  if (!connected) {
    client.connect(__ENV.ADDER_ADDR, { plaintext: true });
    connected = true;
  }
  const r = client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, y: 2 });
  check(r, {
    'status is OK': (r) => r.status === grpc.StatusOK,
    'status is UNAVAILABLE': (r) => r.status === grpc.StatusUnavailable && r.error.code === 14,
  });
  sleep(0.05);
}
