// handleSummary's outputs: stdout, stderr, files (text and bytes), a file in a folder
// that does not exist; checks in nested groups and thresholds, one failing; groups
// without checks.
import http from 'k6/http';
import { check, group } from 'k6';
import { Counter } from 'k6/metrics';

const marks = new Counter('marks');
const base = __ENV.TOTALIZER_URL;

export const options = {
  scenarios: { s: { executor: 'shared-iterations', vus: 2, iterations: 6 } },
  thresholds: {
    http_reqs: ['count>=6'],
    checks: ['rate>0.9'],
    'http_req_duration{group:::g1}': ['max<60000'],
    marks: ['count<1'],
  },
};

// Groups without checks are in k6's root_group too, setup()'s under `::setup`.
export function setup() {
  group('sg', function () {});
}

export default function () {
  group('quiet', function () {
    group('deeper', function () {});
  });
  group('g1', function () {
    const r = http.get(`${base}/v1/results`);
    check(r, { 'is 200': (r) => r.status === 200, 'fails': () => false });
    group('inner', function () {
      check(1, { 'inner ok': () => true });
    });
  });
  check(null, { 'top': () => true });
  marks.add(1);
}

export function handleSummary(data) {
  return {
    stdout: 'SUMMARY-OUT\n',
    stderr: 'SUMMARY-ERR\n',
    'data.json': JSON.stringify(data),
    'bytes.bin': new Uint8Array([0, 1, 2, 255]).buffer,
    'missing/x.txt': 'x',
  };
}
