// Response shapes, reported to the server's /record as JSON: the test runs this under
// Barrage and under k6 1.1 and compares the records.
import http from 'k6/http';
import { check } from 'k6';

export const options = { iterations: 1 };
const B = `http://${__ENV.ADDR}`;

function out(label, v) {
  http.post(`${B}/record`, JSON.stringify({ label, v: v === undefined ? '<undefined>' : v }));
}

function shape(r) {
  const t = {};
  for (const k of Object.keys(r.timings)) t[k] = typeof r.timings[k];
  return {
    keys: Object.keys(r), status: r.status, status_text: r.status_text, proto: r.proto,
    error: r.error, error_code: r.error_code, timings: t, body: typeof r.body,
    url: r.url, remote_ip: r.remote_ip, remote_port: r.remote_port,
  };
}

export default function () {
  let r = http.get(`${B}/cookies`);
  out('cookies', [shape(r), r.headers, r.cookies]);
  out('request', [r.request.method, r.request.url, r.request.body, r.request.cookies, Object.keys(r.request)]);
  // A plain object as k6's: its prototype, a field written stays written, and
  // JSON.stringify gives every field (`request` included, however it is built).
  r.headers['X-Mine'] = 'a';
  out('object', [Object.getPrototypeOf(r) === Object.prototype, r.headers['X-Mine'],
    Object.keys(JSON.parse(JSON.stringify(r))), typeof JSON.parse(JSON.stringify(r)).request.headers]);
  // The rest of what a Go struct seen through goja does (k6's response is one): a
  // field takes writes, a new key or a delete throws k6's TypeError; every field an
  // own, enumerable, non-configurable data property.
  const host = [];
  const tryIt = (f) => { try { return f(); } catch (err) { return [err.name, err.message]; } };
  host.push(tryIt(() => { r.status = 7; return r.status; }));
  host.push(tryIt(() => { r.foo = 1; return r.foo; }));
  host.push(tryIt(() => { delete r.body; return r.body; }));
  host.push(Object.getOwnPropertyDescriptor(r, 'error_code'));
  host.push(['body' in r, 'nope' in r, 'toString' in r, r.hasOwnProperty('json'), r.hasOwnProperty('nope')]);
  host.push([Object.keys({ ...r }), Object.entries(r).length, Object.getOwnPropertyNames(r).length]);
  const forIn = [];
  for (const k in r) forIn.push(k);
  host.push(forIn);
  host.push([r.timings === r.timings, r.request === r.request, String(r), typeof r.json, Object.isExtensible(r)]);
  out('host object', host);
  const checks = [
    check(r, { 'a truthy value': 1, 'a function': (x) => x.status === 7 }),
    check(r, { 'a falsy value': '', 'true': true }, { mine: 'tag' }),
    check(r, {}),
    tryIt(() => check(r, { 'it throws': () => { throw new Error('boom'); } })),
  ];
  out('check', checks);
  r = http.get(`${B}/json`);
  out('json', r.json());
  out('selectors', [r.json('a.b'), r.json('a.c.0.d'), r.json('a.c.#'), r.json('arr.#'), r.json('a.c.#.d'), r.json('n'), r.json('s'), r.json('arr.1')]);
  out('missing', [typeof r.json('missing'), typeof r.json('a.x.y'), typeof r.json('arr.9')]);
  let e = '';
  try { http.get(`${B}/text`).json(); } catch (err) { e = [String(err), err.name]; }
  out('not json', e);
  out('not json, selector', typeof http.get(`${B}/text`).json('a'));
  try { http.get(`${B}/echo`, { responseType: 'none' }).json(); } catch (err) { e = String(err); }
  out('null body', e);
  r = http.get(`${B}/echo`, { responseType: 'binary' });
  out('binary', [Object.prototype.toString.call(r.body), r.body.byteLength > 0]);
  out('none', http.get(`${B}/echo`, { responseType: 'none' }).body);
  r = http.get(`${B}/status/404`);
  out('404', shape(r));
  r = http.get(`${B}/status/503`);
  out('503', shape(r));
  r = http.get('http://127.0.0.1:1/');
  out('refused', [shape(r), r.timings, r.headers, r.cookies, r.body]);
  r = http.get(`${B}/delay/2000`, { timeout: 200 });
  out('timeout', [r.status, r.error, r.error_code, r.body]);
  r = http.get('http://nonexistent.invalid/');
  out('dns', [r.status, r.error, r.error_code]);
  out('unsent', [http.get(`${B}/echo`, { timeout: 'abc' }), http.request('GET')].map((x) => [x.error, x.error_code, x.request, x.url]));
  out('url', http.url`${B}/a/${1}`);
  out('expectedStatuses', [JSON.stringify(http.expectedStatuses(200)), typeof http.expectedStatuses(200)]);
  try { http.expectedStatuses('x'); } catch (err) { e = String(err); }
  out('expectedStatuses error', e);
  const jar = http.cookieJar();
  jar.set(B, 'j', 'v', { path: '/' });
  out('jar', [Object.keys(jar), jar.cookiesForURL(`${B}/`), jar.set(B, 'k', 'w')]);
  jar.delete(B, 'j');
  out('jar after delete', jar.cookiesForURL(`${B}/`));
  jar.clear(B);
  out('jar after clear', jar.cookiesForURL(`${B}/`));
  const rs = http.batch({ a: `${B}/status/201`, b: ['GET', `${B}/status/202`] });
  out('batch', [Object.keys(rs).sort(), rs.a.status, rs.b.status_text]);
  let thrown = '';
  try { http.batch('x'); } catch (err) { thrown = String(err); }
  out('batch error', thrown);
  check(r, { 'ran to the end': () => true });
}
