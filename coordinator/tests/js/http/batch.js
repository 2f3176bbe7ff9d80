// batch: every form, sent in parallel (the server counts requests in flight).
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  iterations: 1,
  thresholds: { 'http_reqs{method:PUT}': ['count>=0'], 'http_reqs{t:b2}': ['count>=0'] },
};
const A = `http://${__ENV.ADDR}`;
const L = `http://localhost:${__ENV.ADDR.split(':')[1]}`;

export default function () {
  const one = http.batch(Array.from({ length: 12 }, () => `${A}/delay/300`));
  check(one, { 'all twelve answered': (rs) => rs.length === 12 && rs.every((r) => r.status === 200 && r.body === 'late') });
  const two = http.batch(Array.from({ length: 12 }, (_, i) => `${i % 2 ? A : L}/delay/300`));
  check(two, { 'two hosts answered': (rs) => rs.every((r) => r.status === 200) });
  const forms = http.batch([
    `${A}/echo?b1`,
    ['POST', `${A}/echo?b2`, 'bd', { tags: { t: 'b2' } }],
    { method: 'GET', url: `${A}/echo?b3` },
  ]);
  check(forms, {
    'array forms, in order': (rs) => rs.map((r) => r.json().query + r.json().method + r.json().body).join() === 'b1GET,b2POSTbd,b3GET',
  });
  const named = http.batch({ x: `${A}/echo?bx`, y: { method: 'PUT', url: `${A}/echo?by`, body: { k: 'v' } } });
  check(named, { 'object form keeps keys': (rs) => rs.x.json().query === 'bx' && rs.y.json().body === 'k=v' });
}
