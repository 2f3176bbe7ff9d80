// One iteration calls a host function CALLS times in a tight loop (spike only).
// KIND: none (an empty JS function), noop (host call that does not suspend),
// switch (suspends the coroutine, resumed at once), yield (suspends, the task yields to tokio).
const calls = Number(__ENV.CALLS);
const kind = __ENV.KIND;
const f = kind === 'none' ? function () {} : __host[kind];

export default function () {
  for (let i = 0; i < calls; i++) f();
}
