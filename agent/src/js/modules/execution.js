// k6/execution: the VU, scenario and instance numbers, read when asked.
import * as host from 'barrage:host';

const info = () => host.execInfo();

// Outside a scenario (the init code, setup(), teardown()) k6 refuses to say.
const scenarioInfo = () => {
  const s = info().scenario;
  if (s === null) {
    throw new Error('getting scenario information outside of the VU context is not supported');
  }
  return s;
};

// Each VU's own `tags` and `metrics`, by its key (a worker's VUs may share this
// module instance, where each k6 VU has its own).
const own = new Map();
function mine() {
  const k = host.vuKey();
  let o = own.get(k);
  if (o === undefined) {
    o = { tags: {}, metrics: { tags: {}, metadata: {} } };
    own.set(k, o);
  }
  return o;
}

export const vu = {
  get idInTest() { return info().vu.idInTest; },
  get idInInstance() { return info().vu.idInInstance; },
  get iterationInInstance() { return info().vu.iterationInInstance; },
  get iterationInScenario() { return info().vu.iterationInScenario; },
  get tags() { return mine().tags; },
  get metrics() { return mine().metrics; },
};

export const scenario = {
  get name() { return scenarioInfo().name; },
  get executor() { return scenarioInfo().executor; },
  get startTime() { return scenarioInfo().startTime; },
  get progress() { return scenarioInfo().progress; },
  get iterationInInstance() { return scenarioInfo().iterationInInstance; },
  get iterationInTest() { return scenarioInfo().iterationInTest; },
};

export const instance = {
  get currentTestRunDuration() { return info().instance.currentTestRunDuration; },
  get iterationsCompleted() { return 0; },
  get iterationsInterrupted() { return 0; },
  get vusActive() { return 0; },
  get vusInitialized() { return 0; },
};

export const test = {
  abort(reason) { throw new Error('test aborted: ' + (reason === undefined ? '' : reason)); },
  options: {},
};

export default { vu, scenario, instance, test };
