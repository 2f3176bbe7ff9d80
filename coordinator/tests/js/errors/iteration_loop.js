// An endless loop in an iteration: stopped at the scenario's hard end (1 s + gracefulStop 1 s).
import http from 'k6/http';

export const options = {
  scenarios: { s: { executor: 'constant-vus', vus: 1, duration: '1s', gracefulStop: '1s' } },
};

export default function () {
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
  if (__ITER === 2) {
    while (true) {}
  }
}
