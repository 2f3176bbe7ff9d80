// The Adder as a k6 user tests it: one scenario connects on every iteration, the other
// once per VU; `r.message.sum === x + y` compares k6's int64 string with a number and
// fails, `Number(...)` passes. Run unchanged by k6 1.1 and by Barrage (js_grpc.rs).
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const client = new grpc.Client();
client.load(['../proto'], 'sum.proto');

const grpcErrors = new Counter('grpc_errors');
const ADDR = __ENV.ADDER_ADDR || 'localhost:50051';

// Sub-metrics on k6's tags of a call, so that the summary counts them.
const TAGGED = [
  'grpc_req_duration{name:/sum.SumNumbersService/SumNumbers,status:0}',
  'grpc_req_duration{service:sum.SumNumbersService,method:SumNumbers,scenario:per_vu}',
  `grpc_req_duration{url:${ADDR}/sum.SumNumbersService/SumNumbers}`,
];

export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(95)', 'count'],
  thresholds: Object.fromEntries(TAGGED.map((m) => [m, ['max>=0']])),
  scenarios: {
    per_iteration: { executor: 'per-vu-iterations', vus: 2, iterations: 15, exec: 'perIteration' },
    per_vu: { executor: 'per-vu-iterations', vus: 3, iterations: 10, exec: 'perVu' },
  },
};

function sum() {
  const x = Math.floor(Math.random() * 100);
  const y = Math.floor(Math.random() * 100);
  const r = client.invoke('sum.SumNumbersService/SumNumbers', { x: x, y: y });
  const ok = check(r, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'sum is correct': (r) => r && r.message && r.message.sum === x + y,
    'sum is correct as a number': (r) => r && r.message && Number(r.message.sum) === x + y,
  });
  if (!ok) grpcErrors.add(1);
}

export function perIteration() {
  client.connect(ADDR, { plaintext: true });
  sum();
  client.close();
}

let connected = false;
export function perVu() {
  if (!connected) {
    client.connect(ADDR, { plaintext: true });
    connected = true;
  }
  sum();
}
