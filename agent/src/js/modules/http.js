// k6/http: requests, the response object and k6's helpers, over barrage:host.
import * as host from 'barrage:host';

function selectPath(obj, path) {
  // k6's json(selector) follows gjson paths; the common dotted form is supported
  // (a.b.0.c, with # for an array's length).
  let cur = obj;
  for (const part of String(path).split('.')) {
    if (cur === undefined || cur === null) return undefined;
    if (part === '#' && Array.isArray(cur)) { cur = cur.length; continue; }
    cur = cur[part];
  }
  return cur;
}

class Response {
  constructor(r, request) {
    Object.assign(this, r);
    this.request = request;
    this.cookies = {};
  }
  json(selector) {
    if (this.body === null || this.body === undefined) {
      throw new Error('the response has no body');
    }
    const v = JSON.parse(typeof this.body === 'string' ? this.body : String(this.body));
    return selector === undefined ? v : selectPath(v, selector);
  }
  html() {
    throw new Error('Response.html() is not supported by Barrage yet');
  }
}

function encodeBody(body, params) {
  if (body === undefined || body === null) return undefined;
  return body;
}

export function request(method, url, body, params) {
  let p = params || {};
  if (p.responseCallback !== undefined && p.responseCallback !== null) {
    p = Object.assign({}, p, { __expected: p.responseCallback.__expected || [] });
  }
  const r = host.httpRequest(String(method), String(url), encodeBody(body, p), p);
  return new Response(r, { method: String(method).toUpperCase(), url: String(url), body, headers: p.headers || {} });
}

export function get(url, params) { return request('GET', url, null, params); }
export function head(url, params) { return request('HEAD', url, null, params); }
export function post(url, body, params) { return request('POST', url, body, params); }
export function put(url, body, params) { return request('PUT', url, body, params); }
export function patch(url, body, params) { return request('PATCH', url, body, params); }
export function del(url, body, params) { return request('DELETE', url, body, params); }
export function options(url, body, params) { return request('OPTIONS', url, body, params); }

export function batch(requests) {
  // Barrage sends a batch's requests one after the other (k6 sends them in parallel).
  const one = (r) => {
    if (typeof r === 'string') return get(r);
    if (Array.isArray(r)) return request(r[0], r[1], r[2], r[3]);
    return request(r.method || 'GET', r.url, r.body, r.params);
  };
  if (Array.isArray(requests)) return requests.map(one);
  const out = {};
  for (const k of Object.keys(requests)) out[k] = one(requests[k]);
  return out;
}

export function expectedStatuses(...args) {
  const list = [];
  for (const a of args) {
    if (typeof a === 'number') list.push(a);
    else if (a && typeof a.min === 'number' && typeof a.max === 'number') {
      for (let s = a.min; s <= a.max; s++) list.push(s);
    } else throw new TypeError('expectedStatuses: expected numbers or {min, max}');
  }
  return { __expected: list };
}

export function setResponseCallback(cb) {
  host.httpSetExpected(cb === null || cb === undefined ? null : cb.__expected || null);
}

export function url(strings, ...values) {
  let s = '';
  strings.forEach((str, i) => { s += str + (i < values.length ? values[i] : ''); });
  return s;
}

export const cookieJar = () => ({
  set() { host.log('warn', 'http.cookieJar().set is not supported by Barrage yet'); },
  cookiesForURL() { return {}; },
});

export default {
  request, get, head, post, put, patch, del, options, batch,
  expectedStatuses, setResponseCallback, url, cookieJar,
};
