// Exceptions and fail() end only their iteration; the run goes on.
import http from 'k6/http';
import { fail } from 'k6';

export const options = { scenarios: { s: { executor: 'shared-iterations', vus: 1, iterations: 10 } } };

export default function () {
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
  const i = __ITER;
  if (i % 5 === 1) throw new Error('iteration boom ' + i);
  if (i % 5 === 2) fail('failed ' + i);
  http.get(`${__ENV.TOTALIZER_URL}/v1/healthcheck`);
}
