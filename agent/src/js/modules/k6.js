// k6: check, group, sleep, fail, randomSeed (k6's semantics, over barrage:host).
import * as host from 'barrage:host';

// Native (js/host.rs): each named check called and recorded in key order.
export function check(val, sets, tags) {
  return host.check(val, sets, tags);
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
