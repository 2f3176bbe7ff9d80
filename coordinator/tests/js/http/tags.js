// Tags (name, url, the http.url template) and response callbacks.
import http from 'k6/http';

const B = `http://${__ENV.ADDR}`;
const t = {};
for (const k of [
  'http_reqs{name:Named}', 'http_reqs{url:Named,extra:e1}', 'http_reqs{name:"${}/echo?id=${}"}',
  'http_reqs{url:"${}/echo?id=${}"}', 'http_req_failed{error_code:1404}',
  'http_reqs{status:404,expected_response:true}', 'http_req_failed{status:201}',
  'http_reqs{status:500}', 'http_req_failed{status:500}', 'http_req_failed{status:200}',
]) t[k] = [k.startsWith('http_req_failed') ? 'rate>=0' : k.startsWith('http_req_duration') ? 'max>=0' : 'count>=0'];
export const options = { iterations: 1, thresholds: t };

export default function () {
  const id = 7;
  http.get(http.url`${B}/echo?id=${id}`);
  http.get(http.url`${B}/echo?id=${id + 1}`);
  http.get(`${B}/echo?named`, { tags: { name: 'Named', extra: 'e1', url: 'ignored' } });
  http.get(`${B}/status/404`, { responseCallback: http.expectedStatuses(404) });
  http.get(`${B}/status/201`, { responseCallback: http.expectedStatuses({ min: 200, max: 200 }) });
  http.get(`${B}/status/500`, { responseCallback: null });
  http.get(`${B}/status/204`);
  http.setResponseCallback(http.expectedStatuses(500));
  http.get(`${B}/status/500`);
  http.get(`${B}/status/200`);
}
