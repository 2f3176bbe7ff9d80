// Runaway recursion in one VU while the others are suspended deep in calls: a
// RangeError in that VU only, also when it recurses after being resumed deep in a call
// (its stack limit must be its own stack's base minus the limit, not where it was
// resumed: from 60 % of the way down, a limit counted from there would run past the
// end of the VU's stack).
import { check, sleep } from 'k6';

export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 12, iterations: 4, maxDuration: '60s' } },
};

let depth = 0;
function runaway() {
  depth++;
  return runaway() + 1;
}

/** How deep `runaway` gets from here before its RangeError. */
function maxDepth() {
  depth = 0;
  try {
    runaway();
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
  }
  return depth;
}

function deep(n, atBottom) {
  if (n === 0) return atBottom();
  return deep(n - 1, atBottom) + 1;
}

export default function () {
  if (__VU % 3 === 1) {
    const top = maxDepth();
    let below = -1;
    deep(Math.floor(top * 0.6), () => {
      sleep(0.005);
      below = maxDepth();
      return 0;
    });
    check(null, {
      'a RangeError at the top': () => top > 100,
      'a RangeError when resumed deep, at its own limit': () => below > 0 && below < top * 0.5,
    });
  } else {
    // Suspended deep in calls while the runaway VUs overflow; then a sane result.
    const r = deep(100 + __VU, () => {
      sleep(0.01);
      return 0;
    });
    check(r, { 'deep calls return': (x) => x === 100 + __VU });
  }
}
