// What throws in k6 1.1 throws here, with k6's messages; each scenario's iterations
// catch it and check what it says (js_grpc.rs).
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const client = new grpc.Client();
client.load(['../proto'], 'sum.proto');

let initError = '';
try {
  client.connect(__ENV.ADDER_ADDR, { plaintext: true });
} catch (e) {
  initError = String(e);
}

export const options = {
  summaryTrendStats: ['avg', 'max', 'count'],
  scenarios: {
    errors: { executor: 'per-vu-iterations', vus: 1, iterations: 3 },
  },
};

function thrown(f) {
  try {
    f();
    return 'nothing thrown';
  } catch (e) {
    return String(e);
  }
}

export default function () {
  check(initError, { 'connect throws in init': (m) => m.includes('in the init context is not supported') });
  check(thrown(() => client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, y: 2 })), {
    'invoke before connect throws': (m) => m.includes('no gRPC connection, you must call connect first'),
  });
  check(thrown(() => client.connect(__ENV.DEAD_ADDR, { plaintext: true, timeout: '5s' })), {
    'connect to a dead target throws': (m) => m.includes('connection error'),
  });
  client.connect(__ENV.ADDER_ADDR, { plaintext: true });
  check(thrown(() => client.invoke('sum.SumNumbersService/Nope', { x: 1, y: 2 })), {
    'an unknown method throws naming it': (m) => m.includes('method "/sum.SumNumbersService/Nope" not found in file descriptors'),
  });
  check(thrown(() => client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, z: 2 })), {
    'an unknown field throws naming it': (m) => m.includes('unable to serialise request object to protocol buffer') && m.includes('"z"'),
  });
  check(thrown(() => client.invoke('sum.SumNumbersService/SumNumbers', { x: 'abc', y: 2 })), {
    'a value of the wrong type throws naming the field': (m) => m.includes('unable to serialise request object to protocol buffer') && /field x\b/.test(m) && m.includes('"abc"'),
  });
  check(thrown(() => client.invoke('sum.SumNumbersService/SumNumbers', { x: 1 }, { nope: 1 })), {
    'an unknown param throws': (m) => m.includes('unknown param: "nope"'),
  });
  // The request is what JSON.stringify makes of it: a double that is whole, a string
  // for an int64, an undefined field left out, an object's toJSON.
  const plain = client.invoke('sum.SumNumbersService/SumNumbers', { x: 2.0, y: '3', z: undefined });
  const custom = client.invoke('sum.SumNumbersService/SumNumbers', { toJSON: () => ({ x: 4, y: 5 }) });
  check([plain, custom], {
    'the request is its JSON': ([p, c]) => p.message.sum === '5' && c.message.sum === '9',
  });
  const r = client.invoke('sum.SumNumbersService/SumNumbers', { x: '9223372036854775807', y: 1 });
  check(r, {
    'a server error is a status, not a throw': (r) => r.status === grpc.StatusInvalidArgument && r.error.code === 3 && r.error.message.includes('overflow'),
    'an error carries the empty message': (r) => r.message.sum === '0',
  });
  client.close();
  check(thrown(() => client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, y: 2 })), {
    'invoke after close throws': (m) => m.includes('no gRPC connection'),
  });
}
