// VU 1 recurses without end, after a sleep (so on a resumed coroutine stack);
// every other VU keeps a 10 ms sleep loop (spike only).
import { sleep } from 'k6';

let depth = 0;
let maxUsed = 0;
let iteration = 0;

function f() {
  depth++;
  if (depth % 32 === 0) {
    const used = __host.sp();
    if (used > maxUsed) maxUsed = used;
  }
  return f();
}

function deepJson() {
  let o = {};
  for (let i = 0; i < 1000000; i++) o = { a: o };
  return JSON.stringify(o);
}

export default function () {
  if (__VU !== 1) {
    sleep(0.01);
    return;
  }
  sleep(0.05);
  iteration++;
  depth = 0;
  maxUsed = 0;
  if (iteration % 3 === 1) {
    try {
      f();
    } catch (e) {
      __host.report(`caught ${e.name}: ${e.message} at JS depth ${depth}, native stack used ${maxUsed} B`);
    }
  } else if (iteration % 3 === 2) {
    try {
      deepJson();
    } catch (e) {
      __host.report(`caught ${e.name}: ${e.message} (JSON.stringify of 1e6 nested objects)`);
    }
  } else {
    f(); // uncaught: ends this iteration with the exception, the VU goes on
  }
}
