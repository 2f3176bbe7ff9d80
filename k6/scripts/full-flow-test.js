// Full-flow test (SPEC.md, test 3): read the total, add x + y through the Adder,
// poll the Totalizer until this event is counted, record the end-to-end delay.
//   k6 run k6/scripts/full-flow-test.js
//   barrage run k6/scripts/full-flow-test.js
// Shorter: -e DURATION=30s (the same variables, with the same defaults, as
// scenarios/full-flow.yaml).
//
// The Adder answers with the partition and offset where its event landed; the
// poll waits until the Totalizer has consumed past that offset (its next offset
// on that partition passes it), not for any growth of the total, which another
// flow's sum could cause first.
import grpc from 'k6/net/grpc';
import http from 'k6/http';
import { check, group, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { textSummary } from 'https://jslib.k6.io/k6-summary/0.1.0/index.js';
import { newAdderClient, randomInt, sumNumbers } from '../lib/grpc-client.js';

const TOTALIZER_URL = __ENV.TOTALIZER_URL || 'http://localhost:8080';
const POLL_EVERY_S = 0.1;
const POLL_MAX = 50;
const IN_TIME_MS = 5000;

const client = newAdderClient();
const e2eLatency = new Trend('e2e_latency', true);
const e2eErrors = new Counter('e2e_errors');

export const options = {
  scenarios: {
    full_flow: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 50),
      timeUnit: '1s',
      duration: __ENV.DURATION || '10m',
      preAllocatedVUs: 50,
      maxVUs: 100,
      exec: 'e2e',
    },
  },
  thresholds: {
    e2e_latency: ['p(95)<2000', 'p(99)<5000'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
};

// The body's JSON, or null for a body that is not JSON.
function json(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

// Whether /v1/results says the Totalizer has consumed past `offset` on `partition`
// (its offsets are the next offset to read, per partition).
function consumedPast(res, partition, offset) {
  const body = res.status === 200 ? json(res) : null;
  const offsets = body && body.offsets;
  const next = offsets ? offsets[String(partition)] : undefined;
  return next !== undefined && Number(next) > Number(offset);
}

export function e2e() {
  const before = group('read the total', () => {
    const res = http.get(`${TOTALIZER_URL}/v1/results`);
    const body = json(res);
    check(res, { 'read total': (r) => r.status === 200 && body !== null && 'result' in body });
    return body;
  });

  const x = randomInt(1, 10);
  const y = randomInt(1, 10);
  const t0 = Date.now();

  const added = group('add', () => {
    const res = sumNumbers(client, x, y);
    const accepted = check(res, {
      'sum accepted': (r) => r.status === grpc.StatusOK && Number(r.message.sum) === x + y,
    });
    return accepted ? res : null;
  });
  if (added === null) {
    e2eErrors.add(1);
    return; // nothing to wait for
  }

  group('wait until counted', () => {
    let counted = null;
    for (let attempt = 0; attempt < POLL_MAX && counted === null; attempt++) {
      sleep(POLL_EVERY_S);
      const res = http.get(`${TOTALIZER_URL}/v1/results`);
      if (consumedPast(res, added.message.partition, added.message.offset)) {
        counted = json(res);
      }
    }
    const elapsedMs = Date.now() - t0;
    e2eLatency.add(elapsedMs);
    check(counted, {
      'total increased': (c) =>
        c !== null && before !== null && Number(c.result) >= Number(before.result) + x + y,
      'e2e completed in time': (c) => c !== null && elapsedMs < IN_TIME_MS,
    });
  });
}

// `k6 run --vus 10 --duration 30s` replaces the scenarios with one running `default`.
export default e2e;

export function handleSummary(data) {
  return {
    stdout: textSummary(data, { indent: ' ', enableColors: true }),
    'results/full-flow-results.json': JSON.stringify(data),
  };
}
