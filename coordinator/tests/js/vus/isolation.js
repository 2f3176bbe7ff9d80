// What each VU keeps to itself, however its worker's VUs share QuickJS (a runtime
// each, a context each, or one context with a module instance each): its module-level
// state, its instance of a local module (one instance however many of its modules
// import it, statically or by a dynamic `import()`), `__VU`, its cookie jar, its
// response callback and `exec.vu.tags`, while the other VUs run between its steps.
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { bump, count } from './isolation-lib.js';
import { bumpVia } from './isolation-via.js';

export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 16, iterations: 5, maxDuration: '60s' } },
};

const url = `${__ENV.TOTALIZER_URL}/v1/results`;
let mine = 0;
const myVu = __VU;
const parity = __VU % 2 ? 'odd' : 'even';
// Even VUs expect only 404: their 200s count as failed requests (half of them all).
if (__VU % 2 === 0) http.setResponseCallback(http.expectedStatuses(404));
exec.vu.tags.parity = parity;

export default async function () {
  mine += 1;
  bump();
  bumpVia();
  const dynamic = await import('./isolation-lib.js');
  const jar = http.cookieJar();
  jar.set(url, 'vu', String(__VU));
  sleep(0.001 * (__VU % 3));
  http.get(url);
  check(null, {
    'its own module state': () => mine === __ITER + 1,
    'one instance of a local module, its own': () => count() === 2 * (__ITER + 1),
    'a dynamic import is that instance': () => dynamic.count === count,
    'its own __VU': () => myVu === __VU && exec.vu.idInTest === __VU,
    'its own cookie jar': () => {
      const c = jar.cookiesForURL(url).vu;
      return c !== undefined && c.length === 1 && c[0] === String(__VU);
    },
    'its own exec.vu.tags': () => exec.vu.tags.parity === parity,
  });
}
