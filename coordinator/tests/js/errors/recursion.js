// Runaway recursion is a RangeError in that VU; the run goes on.
import http from 'k6/http';

export const options = { scenarios: { s: { executor: 'shared-iterations', vus: 1, iterations: 3 } } };

function deep(n) {
  return deep(n + 1) + 1;
}

export default function () {
  if (__ITER === 1) deep(0);
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
}
