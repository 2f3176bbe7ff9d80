// Every request function and body form; the test checks what the server got.
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  iterations: 1,
  thresholds: { 'http_reqs{method:DELETE}': ['count>=0'], 'http_reqs{method:POST}': ['count>=0'] },
};
const B = `http://${__ENV.ADDR}/m`;

export default function () {
  const r = http.get(B, { headers: { 'X-A': '1' } });
  check(r, { 'get echoes': (r) => r.json().method === 'GET' && r.json().headers['x-a'] === '1' });
  check(http.head(B), { 'head has no body': (r) => r.status === 200 && r.body === '' });
  http.post(B, { a: 'x y', c: 'é&=', b: 2 });
  http.post(B, 'plain', { headers: { 'x-custom': 'q' } });
  http.post(B, new Uint8Array([104, 105]));
  http.put(B, JSON.stringify({ k: 1 }), { headers: { 'Content-Type': 'application/json' } });
  http.patch(B, 'p');
  http.del(B, 'delbody');
  const o = http.options(B, 'optbody');
  check(o, { 'options sent its body': (r) => r.json().body === 'optbody' });
  const q = http.request('get', B + '?via=request');
  check(q, { 'request upper-cases the method': (r) => r.request.method === 'GET' && r.json().query === 'via=request' });
}
