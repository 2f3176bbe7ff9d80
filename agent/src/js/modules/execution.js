// k6/execution: the VU, scenario and instance numbers, read when asked.
import * as host from 'barrage:host';

const info = () => host.execInfo();

export const vu = {
  get idInTest() { return info().vu.idInTest; },
  get idInInstance() { return info().vu.idInInstance; },
  get iterationInInstance() { return info().vu.iterationInInstance; },
  get iterationInScenario() { return info().vu.iterationInScenario; },
  tags: {},
  metrics: { tags: {}, metadata: {} },
};

export const scenario = {
  get name() { return info().scenario.name; },
  get executor() { return info().scenario.executor; },
  get startTime() { return info().scenario.startTime; },
  get progress() { return info().scenario.progress; },
  get iterationInInstance() { return info().scenario.iterationInInstance; },
  get iterationInTest() { return info().scenario.iterationInTest; },
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
