// Totalizer HTTP test (SPEC.md, test 2): GET /v1/healthcheck and /v1/results,
// failures counted in http_errors, then a 10 ms sleep.
//   k6 run k6/scripts/totalizer-http-test.js
//   barrage run k6/scripts/totalizer-http-test.js
// Shorter: -e DURATION=30s -e STRESS_START=35s -e STRESS_STAGE_1=5s ... (the same
// variables, with the same defaults, as scenarios/totalizer-http.yaml).
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { textSummary } from 'https://jslib.k6.io/k6-summary/0.1.0/index.js';

const TOTALIZER_URL = __ENV.TOTALIZER_URL || 'http://localhost:8080';
const httpErrors = new Counter('http_errors');

export const options = {
  scenarios: {
    constant_load: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: __ENV.DURATION || '5m',
      preAllocatedVUs: 50,
      maxVUs: 100,
      exec: 'read',
    },
    stress_test: {
      executor: 'ramping-vus',
      startVUs: 10,
      startTime: __ENV.STRESS_START || '6m',
      stages: [
        { duration: __ENV.STRESS_STAGE_1 || '2m', target: 50 },
        { duration: __ENV.STRESS_STAGE_2 || '3m', target: 100 },
        { duration: __ENV.STRESS_STAGE_3 || '2m', target: 200 },
        { duration: __ENV.STRESS_STAGE_4 || '1m', target: 0 },
      ],
      exec: 'read',
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<100', 'p(99)<200'],
    http_errors: ['count<10'],
    http_req_failed: ['rate<0.01'],
  },
};

// Whether the body is a JSON object with a `result` field (false, not an
// exception, for a body that is not JSON).
function hasResult(res) {
  try {
    const body = res.json();
    return body !== null && typeof body === 'object' && 'result' in body;
  } catch (e) {
    return false;
  }
}

export function read() {
  const health = http.get(`${TOTALIZER_URL}/v1/healthcheck`);
  if (!check(health, { 'healthcheck status is 200': (r) => r.status === 200 })) {
    httpErrors.add(1);
  }

  const results = http.get(`${TOTALIZER_URL}/v1/results`);
  const ok = check(results, {
    'results status is 200': (r) => r.status === 200,
    'body has a result field': hasResult,
  });
  if (!ok) {
    httpErrors.add(1);
  }

  sleep(0.01); // the stress test is ~200 VUs x 10 ms, not a max-rate loop
}

// `k6 run --vus 10 --duration 30s` replaces the scenarios with one running `default`.
export default read;

export function handleSummary(data) {
  return {
    stdout: textSummary(data, { indent: ' ', enableColors: true }),
    'results/totalizer-http-results.json': JSON.stringify(data),
  };
}
