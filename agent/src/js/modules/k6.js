// k6: check, group, sleep, fail, randomSeed (k6's semantics, over barrage:host).
import * as host from 'barrage:host';

export function check(val, sets, tags) {
  if (sets === null || typeof sets !== 'object') {
    throw new TypeError('check: the second argument must be an object of named checks');
  }
  let all = true;
  const names = Object.keys(sets);
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    const c = sets[name];
    const ok = typeof c === 'function' ? !!c(val) : !!c;
    host.check(name, ok, tags);
    if (!ok) all = false;
  }
  return all;
}

export function group(name, fn) {
  if (typeof fn !== 'function') {
    throw new TypeError('group: the second argument must be a function');
  }
  const mark = host.groupEnter(String(name));
  try {
    return fn();
  } finally {
    host.groupExit(mark);
  }
}

export function sleep(secs) {
  host.sleep(Number(secs));
}

export function fail(err) {
  throw new Error(err === undefined ? 'fail' : String(err));
}

export function randomSeed(seed) {
  host.log('warn', 'randomSeed is not supported; Math.random is not reseeded');
}

export default { check, group, sleep, fail, randomSeed };
