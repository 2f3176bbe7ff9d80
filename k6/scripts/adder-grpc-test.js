// Adder gRPC test (SPEC.md, test 1): random x, y in 0..99, SumNumbers, checks,
// failures counted in grpc_errors, then a 10 ms sleep.
//   k6 run k6/scripts/adder-grpc-test.js
//   barrage run k6/scripts/adder-grpc-test.js
// Shorter: -e DURATION=30s -e SPIKE_START=35s -e SPIKE_STAGE=10s (the same variables,
// with the same defaults, as scenarios/adder-grpc.yaml).
import grpc from 'k6/net/grpc';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { textSummary } from 'https://jslib.k6.io/k6-summary/0.1.0/index.js';
import { newAdderClient, randomInt, sumNumbers } from '../lib/grpc-client.js';

const client = newAdderClient();
const grpcErrors = new Counter('grpc_errors');

const stage = __ENV.SPIKE_STAGE || '1m';

export const options = {
  scenarios: {
    constant_load: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '5m',
      preAllocatedVUs: 50,
      maxVUs: 100,
      exec: 'add',
    },
    spike_test: {
      executor: 'ramping-arrival-rate',
      startRate: 10,
      timeUnit: '1s',
      preAllocatedVUs: 100,
      maxVUs: 200,
      startTime: __ENV.SPIKE_START || '6m',
      stages: [
        { duration: stage, target: 10 },
        { duration: stage, target: Number(__ENV.SPIKE_PEAK || 500) },
        { duration: stage, target: 10 },
      ],
      exec: 'add',
    },
  },
  thresholds: {
    grpc_req_duration: ['p(95)<200', 'p(99)<500'],
    grpc_errors: ['count<10'],
  },
};

export function add() {
  const x = randomInt(0, 99);
  const y = randomInt(0, 99);
  const res = sumNumbers(client, x, y);
  const ok = check(res, {
    'status is OK': (r) => r.status === grpc.StatusOK,
    // k6 hands int64 fields to scripts as strings: compare numbers, not '42' to 42.
    'sum is correct': (r) => r.status === grpc.StatusOK && Number(r.message.sum) === x + y,
  });
  if (!ok) {
    grpcErrors.add(1);
  }
  sleep(0.01); // paces each VU of a VU executor (--vus/--duration)
}

// `k6 run --vus 10 --duration 30s` replaces the scenarios with one running `default`.
export default add;

export function handleSummary(data) {
  return {
    stdout: textSummary(data, { indent: ' ', enableColors: true }),
    'results/adder-grpc-results.json': JSON.stringify(data),
  };
}
