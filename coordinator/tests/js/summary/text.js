// textSummary from k6's jslib (vendored), as k6 users write it.
import http from 'k6/http';
import { check, group } from 'k6';
import { textSummary } from 'https://jslib.k6.io/k6-summary/0.1.0/index.js';

export const options = { iterations: 3, thresholds: { http_reqs: ['count>=3'] } };

export default function () {
  group('g1', () => {
    check(http.get(`${__ENV.TOTALIZER_URL}/v1/results`), { 'is 200': (r) => r.status === 200 });
  });
}

export function handleSummary(data) {
  return { stdout: textSummary(data, { indent: '→', enableColors: false }) };
}
