// Failed requests: k6's error texts, codes and timings.
import http from 'k6/http';
import { check } from 'k6';

const t = {};
for (const k of [
  'http_reqs{error_code:1212}', 'http_req_duration{error_code:1212}', 'http_reqs{error_code:1050}',
  'http_req_duration{error_code:1050}', 'http_reqs{error_code:1000}',
]) t[k] = [k.startsWith('http_req_failed') ? 'rate>=0' : k.startsWith('http_req_duration') ? 'max>=0' : 'count>=0'];
export const options = { iterations: 1, thresholds: t };
const B = `http://${__ENV.ADDR}`;

export default function () {
  const r = http.get(`http://${__ENV.DEAD}/x`);
  check(r, {
    'refused': (r) => r.status === 0 && r.error === 'dial: connection refused' && r.error_code === 1212
      && r.body === null && r.timings.duration === 0 && r.status_text === '' && r.proto === '',
  });
  const slow = http.get(`${B}/delay/2000`, { timeout: '300ms' });
  check(slow, { 'timeout': (r) => r.status === 0 && r.error === 'request timeout' && r.error_code === 1050 });
  const ftp = http.get('ftp://x/');
  check(ftp, { 'not http': (r) => r.error === 'unsupported protocol scheme "ftp"' && r.error_code === 1000 });
  const bad = http.get(`${B}/echo`, { timeout: 'abc' });
  check(bad, { 'bad timeout is not sent': (r) => r.error === 'invalid timeout value: time: invalid duration "abc"' && r.request === null });
  const none = http.request('GET');
  check(none, { 'no URL': (r) => r.error_code === 1020 && r.error === "invalid URL: '#<nil>'" });
  let thrown = '';
  try { http.get(`${B}/echo`, { responseCallback: () => true }); } catch (e) { thrown = String(e); }
  check(thrown, { 'a callback not from expectedStatuses is refused': (s) => s === '' });
}
