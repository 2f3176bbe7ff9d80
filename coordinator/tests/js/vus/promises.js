// Async iterations of several VUs on one worker, their awaits interleaved with
// suspensions: each VU's promise jobs run on its own coroutine, with its own host.
import { check, sleep } from 'k6';
import exec from 'k6/execution';

export const options = {
  scenarios: { s: { executor: 'per-vu-iterations', vus: 16, iterations: 5, maxDuration: '60s' } },
};

async function step(i) {
  await null;
  // Suspends inside a promise job.
  sleep(0.001 * (i % 3));
  return i + exec.vu.idInTest * 0;
}

export default async function () {
  const me = __VU;
  let sum = 0;
  const seen = [];
  for (let i = 0; i < 4; i++) {
    sum += await step(i);
    seen.push(exec.vu.idInTest);
  }
  const all = await Promise.all([step(1), step(2), Promise.resolve(3)]);
  check(null, {
    'awaits in order': () => sum === 6 && all.join() === '1,2,3',
    'its own host in every job': () => seen.every((v) => v === me),
  });
}
