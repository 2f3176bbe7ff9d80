// A worker whose allow-list has ALLOWED_ADDR only: calls there work, connect() to
// FORBIDDEN_ADDR throws the allow-list's refusal before anything is sent. Throws when
// either is not so (js_grpc.rs runs it on a worker in process).
import grpc from 'k6/net/grpc';

const client = new grpc.Client();
client.load(['../proto'], 'sum.proto');

export const options = {
  scenarios: {
    s: { executor: 'per-vu-iterations', vus: 1, iterations: 4 },
  },
};

export default function () {
  client.connect(__ENV.ALLOWED_ADDR, { plaintext: true });
  const r = client.invoke('sum.SumNumbersService/SumNumbers', { x: 1, y: 2 });
  if (!(r.status === grpc.StatusOK && r.message.sum === '3')) {
    throw new Error('the allowed target: ' + JSON.stringify(r));
  }
  let refusal = 'nothing thrown';
  try {
    client.connect(__ENV.FORBIDDEN_ADDR, { plaintext: true });
  } catch (e) {
    refusal = String(e);
  }
  if (!refusal.includes("not allowed by this agent's --allow-target list")) {
    throw new Error('the forbidden target was not refused: ' + refusal);
  }
}
