// naive-adder-test.js with the seed's handleSummary, which calls textSummary
// without importing it (as the seed's scripts did): handleSummary throws a
// ReferenceError, k6 1.1 logs it and prints its own end-of-test summary instead,
// and no results file is written. Everything else is naive-adder-test.js.
// k6/README.md records what k6 1.1 gives on it; Barrage must give the same.
import grpc from 'k6/net/grpc';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

const client = new grpc.Client();
client.load(['../../proto'], 'sum.proto');

const grpcErrors = new Counter('grpc_errors');

export const options = {
  scenarios: {
    constant_load: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 100),
      timeUnit: '1s',
      duration: __ENV.DURATION || '5m',
      preAllocatedVUs: 50,
      maxVUs: 100,
    },
    spike_test: {
      executor: 'ramping-arrival-rate',
      startRate: 10,
      timeUnit: '1s',
      stages: [
        { duration: __ENV.SPIKE_STAGE || '1m', target: 10 },
        { duration: __ENV.SPIKE_STAGE || '1m', target: Number(__ENV.SPIKE_PEAK || 500) },
        { duration: __ENV.SPIKE_STAGE || '1m', target: 10 },
      ],
      preAllocatedVUs: 100,
      maxVUs: 200,
      startTime: __ENV.SPIKE_START || '6m',
    },
  },
  thresholds: {
    grpc_req_duration: ['p(95)<200', 'p(99)<500'],
    grpc_errors: ['count<10'],
  },
};

export default function () {
  const addr = __ENV.ADDER_ADDR || 'localhost:50051';
  client.connect(addr, { plaintext: true });

  const x = Math.floor(Math.random() * 100);
  const y = Math.floor(Math.random() * 100);
  const r = client.invoke('sum.SumNumbersService/SumNumbers', { x: x, y: y });

  const success = check(r, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'sum is right': (r) => r && r.message.sum === x + y,
  });
  if (!success) {
    grpcErrors.add(1);
  }

  client.close();
  sleep(0.01);
}

export function handleSummary(data) {
  return {
    stdout: textSummary(data, { indent: ' ', enableColors: true }),
    'results/adder-grpc-results.json': JSON.stringify(data),
  };
}
