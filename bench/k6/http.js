// k6 counterpart of bench/scenarios/http-{closed,open,sleep}.yaml: GET
// /v1/results with a status check. MODE=closed: constant-vus (VUS, DURATION);
// MODE=open: constant-arrival-rate (RATE per second, DURATION, PRE_VUS,
// MAX_VUS); MODE=sleep: constant-vus, each iteration GET then sleep(1).
// TOTALIZER_URL=http://host:port.
import http from 'k6/http';
import { check, sleep } from 'k6';

const mode = __ENV.MODE || 'closed';
const duration = __ENV.DURATION || '15s';

const scenario = mode === 'open'
  ? {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 3000),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: Number(__ENV.PRE_VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 200),
      gracefulStop: '5s',
    }
  : { executor: 'constant-vus', vus: Number(__ENV.VUS || 50), duration, gracefulStop: '5s' };

export const options = {
  scenarios: { bench: scenario },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

const url = `${__ENV.TOTALIZER_URL || 'http://127.0.0.1:8080'}/v1/results`;

export default function () {
  const res = http.get(url);
  check(res, { 'status is 200': (r) => r.status === 200 });
  if (mode === 'sleep') {
    sleep(1);
  }
}
