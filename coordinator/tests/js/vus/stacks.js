// Many VUs on one worker, each suspended deep in its own calls while the others run,
// throw and build stacks: every stack must name only its own VU's frames (odd VUs go
// through `oddPath`, even VUs through `evenPath`), and a stack built after a resume
// must still reach the VU's first frame (`default`).
import { check, sleep } from 'k6';
import http from 'k6/http';

Error.stackTraceLimit = 100;

export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 20, iterations: 6, maxDuration: '60s' } },
};

function deep(n) {
  if (n === 0) {
    // Suspended here, deep in the call, while the other VUs run.
    if (__ITER % 3 === 0) http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
    else sleep(0.002 * (__VU % 4));
    throw new Error(`vu ${__VU} iter ${__ITER}`);
  }
  return deep(n - 1) + 1;
}

function oddPath() {
  return deep(2 + (__VU % 7));
}

function evenPath() {
  return deep(3 + (__VU % 5));
}

export default function () {
  const mine = __VU % 2 ? 'oddPath' : 'evenPath';
  const other = __VU % 2 ? 'evenPath' : 'oddPath';
  try {
    (__VU % 2 ? oddPath : evenPath)();
    check(null, { 'threw': () => false });
  } catch (e) {
    const stack = String(e.stack);
    const depth = stack.split('\n').filter((l) => l.includes('at deep')).length;
    check(null, {
      'its own message': () => e.message === `vu ${__VU} iter ${__ITER}`,
      'its own path': () => stack.includes(mine) && !stack.includes(other),
      'its own depth': () => depth === (__VU % 2 ? 3 + (__VU % 7) : 4 + (__VU % 5)),
      'down to default': () => stack.includes('default'),
    });
  }
}
