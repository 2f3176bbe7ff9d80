// handleSummary runs in a fresh VU: __VU 0, the init code run again (module state of
// the test's VUs not seen), no __ITER; it may send requests and sleep, as in k6.
import http from 'k6/http';
import { sleep } from 'k6';

const base = __ENV.TOTALIZER_URL;
let inits = 0;
inits++;
let iterations = 0;

export const options = { iterations: 3 };

export default function () {
  iterations++;
  http.get(`${base}/v1/results`);
}

export function handleSummary(data) {
  const r = http.get(`${base}/v1/healthcheck`);
  sleep(0.01);
  const seen = {
    vu: __VU,
    iter: typeof __ITER,
    inits,
    iterations,
    status: r.status,
    count: data.metrics.iterations.values.count,
  };
  return { stdout: 'FRESH ' + JSON.stringify(seen) + '\n' };
}
