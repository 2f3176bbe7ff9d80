// Per-request cookies and the VU's jar.
import http from 'k6/http';
import { check } from 'k6';

export const options = { iterations: 1 };
const B = `http://${__ENV.ADDR}`;

export default function () {
  const jar = http.cookieJar();
  check(jar, { 'jar has k6 functions': (j) => Object.keys(j).join() === 'clear,cookiesForURL,delete,set' });
  jar.set(B, 'j1', 'v1');
  jar.set(`${B}/sub`, 'j2', 'v2', { path: '/sub' });
  jar.set(B, 'j3', 'v3', { domain: '127.0.0.1', path: '/', http_only: true, max_age: 100 });
  check(jar, {
    'cookiesForURL by path': (j) => {
      const top = j.cookiesForURL(`${B}/`);
      const sub = j.cookiesForURL(`${B}/sub/x`);
      return Object.keys(top).sort().join() === 'j1,j3' && Object.keys(sub).sort().join() === 'j1,j2,j3'
        && top.j1[0] === 'v1' && sub.j2[0] === 'v2';
    },
  });
  http.get(`${B}/jar`);
  const p = http.get(`${B}/params`, { cookies: { c1: 'x', j1: 'override' } });
  check(p, { 'request.cookies lists both': (r) => r.request.cookies.j1.length === 2 && r.request.cookies.c1[0].value === 'x' });
  http.get(`${B}/replace`, { cookies: { j1: { value: 'rep', replace: true } } });
  http.get(`${B}/header`, { headers: { Cookie: 'hdr=1' }, cookies: { c2: 'y' } });
  const c = http.get(`${B}/cookies`);
  check(c, {
    'response cookies in k6 shape': (r) => JSON.stringify(r.cookies.b) === JSON.stringify([{
      name: 'b', value: '2', domain: '', path: '/', http_only: true, secure: false, max_age: 100, expires: -6795364578871,
    }]),
  });
  check(jar, { 'the jar took them': (j) => j.cookiesForURL(`${B}/`).a[0] === '1' });
  jar.delete(B, 'a');
  check(jar, { 'delete': (j) => j.cookiesForURL(`${B}/`).a === undefined && j.cookiesForURL(`${B}/`).b[0] === '2' });
  jar.clear(B);
  check(jar, { 'clear': (j) => JSON.stringify(j.cookiesForURL(`${B}/`)) === '{}' });
  check(jar, { 'not a URL': (j) => { j.set('notaurl', 'x', 'y'); return JSON.stringify(j.cookiesForURL('notaurl')) === '{}'; } });
  http.get(`${B}/cleared`);
}
