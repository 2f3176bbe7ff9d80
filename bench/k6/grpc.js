// k6 counterpart of bench/scenarios/grpc-{closed,open}.yaml: SumNumbers with
// random x, y in 0..99 and the same two checks, so both tools do the same work.
// MODE=closed: constant-vus (VUS, DURATION); MODE=open: constant-arrival-rate
// (RATE per second, DURATION, PRE_VUS, MAX_VUS). ADDER_ADDR=host:port.
import grpc from 'k6/net/grpc';
import { check } from 'k6';

const mode = __ENV.MODE || 'closed';
const duration = __ENV.DURATION || '15s';

const scenario = mode === 'open'
  ? {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 3000),
      timeUnit: '1s',
      duration,
      preAllocatedVUs: Number(__ENV.PRE_VUS || 50),
      maxVUs: Number(__ENV.MAX_VUS || 200),
      gracefulStop: '5s',
    }
  : { executor: 'constant-vus', vus: Number(__ENV.VUS || 50), duration, gracefulStop: '5s' };

export const options = {
  scenarios: { bench: scenario },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
};

const client = new grpc.Client();
client.load(['../../proto'], 'sum.proto');
let connected = false;

export default function () {
  // One connection per VU, opened by its first iteration (connect is not
  // allowed in the init context), like Barrage's per-VU channel reuse; a
  // failed connect throws, so the next iteration tries again.
  if (!connected) {
    client.connect(__ENV.ADDER_ADDR || '127.0.0.1:50051', { plaintext: true });
    connected = true;
  }
  const x = Math.floor(Math.random() * 100);
  const y = Math.floor(Math.random() * 100);
  const res = client.invoke('sum.SumNumbersService/SumNumbers', { x, y });
  check(res, {
    'status is OK': (r) => r && r.status === grpc.StatusOK,
    'sum is correct': (r) => r && r.message && Number(r.message.sum) === x + y,
  });
}
