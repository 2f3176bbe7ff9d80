// Start time of N VUs (bench/js_memory.py start): each VU GETs /v1/results once, in its
// first iteration, then sleeps; so the target has served VUS requests exactly when the
// last VU has run its first iteration (its init included). TOTALIZER_URL=http://host:port.
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  scenarios: {
    start: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 1000),
      duration: __ENV.DURATION || '20s',
      gracefulStop: '5s',
    },
  },
};

const url = `${__ENV.TOTALIZER_URL || 'http://127.0.0.1:8080'}/v1/results`;

export default function () {
  if (__ITER === 0) {
    const res = http.get(url);
    check(res, { 'status is 200': (r) => r.status === 200 });
  }
  sleep(1);
}
