// Methods from a protoset file and from the server's reflection, no .proto at all
// (js_grpc.rs writes sum.protoset beside the script).
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const fromSet = new grpc.Client();
const methods = fromSet.loadProtoset('sum.protoset');
const reflected = new grpc.Client();

export const options = {
  scenarios: {
    s: { executor: 'per-vu-iterations', vus: 2, iterations: 3 },
  },
};

export default function () {
  check(methods, {
    'loadProtoset lists the method': (m) => m.length === 1 && m[0].full_method === '/sum.SumNumbersService/SumNumbers',
  });
  fromSet.connect(__ENV.ADDER_ADDR, { plaintext: true });
  const a = fromSet.invoke('sum.SumNumbersService/SumNumbers', { x: 20, y: 22 });
  check(a, { 'protoset: 42': (r) => r.status === grpc.StatusOK && r.message.sum === '42' });
  reflected.connect(__ENV.ADDER_ADDR, { plaintext: true, reflect: true });
  const b = reflected.invoke('/sum.SumNumbersService/SumNumbers', { x: 40, y: 2 });
  check(b, { 'reflection: 42': (r) => r.status === grpc.StatusOK && Number(r.message.sum) === 42 });
}
