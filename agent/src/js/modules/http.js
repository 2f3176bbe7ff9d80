// k6/http: the request functions, batch, the response object, the cookie jar and
// k6's helpers, over barrage:host (`js/http.rs` sends, records and builds the
// response's fields; the shapes and k6's argument forms are here).
import * as host from 'barrage:host';

// k6 throws Go errors; scripts see their name in messages ("GoError: ...").
function goError(message) {
  const e = new Error(message);
  e.name = 'GoError';
  return e;
}

// The statuses a response callback accepts: `http.expectedStatuses(...)` makes one.
// Opaque as in k6 (JSON.stringify shows `{}`).
const STATUSES = Symbol('expectedStatuses');

export function expectedStatuses(...args) {
  const list = [];
  args.forEach((a, i) => {
    if (typeof a === 'number' && Number.isInteger(a)) list.push(a);
    else if (a !== null && typeof a === 'object' && Number.isInteger(a.min) && Number.isInteger(a.max)) {
      for (let s = a.min; s <= a.max; s++) list.push(s);
    } else {
      throw goError('argument number ' + (i + 1) + ' to expectedStatuses was neither an integer nor an object like {min:100, max:329}');
    }
  });
  const cb = {};
  Object.defineProperty(cb, STATUSES, { value: list });
  return cb;
}

// Each VU's own state, by its key: a worker's VUs may share this module instance
// (one realm per worker), where each k6 VU has its own. `expected` is the VU's default
// response callback: `undefined` is k6's default (200-399), `null` none (no
// `expected_response` tag and no `http_req_failed` sample), else a list of statuses;
// `jar` its cookie jar, made when first asked for.
const vus = new Map();
function mine() {
  const vu = host.vuKey();
  let s = vus.get(vu);
  if (s === undefined) {
    s = { expected: undefined, jar: undefined };
    vus.set(vu, s);
  }
  return s;
}

export function setResponseCallback(cb) {
  const s = mine();
  s.expected = expectedOf(cb);
  if (s.expected === false) {
    s.expected = undefined;
    throw goError('unsupported responseCallback');
  }
}

// A callback's statuses; `false` for something expectedStatuses did not make.
function expectedOf(cb) {
  if (cb === null || cb === undefined) return null;
  const list = cb[STATUSES];
  return Array.isArray(list) ? list : false;
}

// gjson's paths as k6 scripts use them: `a.b`, `a.0.b`, `a.#` (an array's length),
// `a.#.b` (b of every element); `\.` escapes a dot. A missing path is undefined.
function splitPath(path) {
  const parts = [];
  let cur = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c === '\\' && i + 1 < path.length) cur += path[++i];
    else if (c === '.') { parts.push(cur); cur = ''; }
    else cur += c;
  }
  parts.push(cur);
  return parts;
}

function select(v, parts, from) {
  let cur = v;
  for (let i = from; i < parts.length; i++) {
    const p = parts[i];
    if (Array.isArray(cur)) {
      if (p === '#') {
        if (i === parts.length - 1) return cur.length;
        const out = [];
        for (const e of cur) {
          const x = select(e, parts, i + 1);
          if (x !== undefined) out.push(x);
        }
        return out;
      }
      if (!/^[0-9]+$/.test(p)) return undefined;
      cur = cur[Number(p)];
      if (cur === undefined) return undefined;
    } else if (cur !== null && typeof cur === 'object') {
      if (!Object.prototype.hasOwnProperty.call(cur, p)) return undefined;
      cur = cur[p];
    } else {
      return undefined;
    }
  }
  return cur;
}

// k6's message for a body that is not JSON: Go's offset (just past the bad byte) as
// line and character, and Go's text for the common cases.
function jsonError(text, e) {
  let i = 0;
  while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  let offset = text.length;
  let why = 'unexpected end of JSON input';
  if (i < text.length) {
    const c = text[i];
    if (!'{["-0123456789tfn'.includes(c)) {
      offset = i + 1;
      why = "invalid character '" + c + "' looking for beginning of value";
    } else {
      offset = i + 1;
      why = String(e && e.message !== undefined ? e.message : e);
    }
  }
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const character = offset - before.lastIndexOf('\n');
  return goError('cannot parse json due to an error at line ' + line + ', character ' + character + ' , error: ' + why);
}

function bodyText(body) {
  if (typeof body === 'string') return body;
  if (body instanceof ArrayBuffer) {
    const b = new Uint8Array(body);
    let s = '';
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    try { return decodeURIComponent(escape(s)); } catch (e) { return s; }
  }
  return String(body);
}

function json(selector) {
  if (this.body === null || this.body === undefined) {
    throw goError("the body is null so we can't transform it to JSON - this likely was because of a request error getting the response");
  }
  const text = bodyText(this.body);
  if (selector !== undefined) {
    let v;
    try { v = JSON.parse(text); } catch (e) { return undefined; }
    return select(v, splitPath(String(selector)), 0);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw jsonError(text, e);
  }
}

function html() {
  throw goError('Response.html() is not supported by Barrage yet');
}

function clickLink() {
  throw goError('Response.clickLink() is not supported by Barrage yet');
}

function submitForm() {
  throw goError('Response.submitForm() is not supported by Barrage yet');
}

// k6's response is a native object (`js/response.rs`) whose fields are built when
// read; what every response shares is made once per VU here: its methods, the TLS
// details k6 shows for plain HTTP, and the cookies of a response without any.
const OCSP = Object.freeze({
  produced_at: 0, this_update: 0, next_update: 0, revoked_at: 0,
  revocation_reason: '', status: '',
});
const NO_COOKIES = Object.freeze({});
const KIT = host.httpKit(clickLink, html, json, submitForm, OCSP, NO_COOKIES);

// A response for a request that was never made (bad arguments): k6 warns and hands
// back this instead of throwing.
function unsent(error, code) {
  return host.httpUnsent(KIT, String(error), code);
}

// One request's arguments for the native side, or a string saying why it cannot go.
function prepare(method, url, body, params) {
  const p = params === undefined || params === null ? {} : params;
  let name;
  if (url !== null && typeof url === 'object' && typeof url.url === 'string') {
    // http.url`...`: the template is the name (and url) tag.
    name = url.name;
    url = url.url;
  } else if (url === undefined || url === null) {
    return ["invalid URL: '#<nil>'", 1020];
  } else {
    url = String(url);
  }
  let expected = mine().expected;
  if (Object.prototype.hasOwnProperty.call(p, 'responseCallback')) {
    expected = expectedOf(p.responseCallback);
    if (expected === false) return ['unsupported responseCallback', 0];
  }
  if (body !== null && body !== undefined && ArrayBuffer.isView(body)) {
    body = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  }
  // No params: null, which the native side reads without a lookup per field.
  return [String(method), url, name, body, p === params ? p : null, expected];
}

export function request(method, url, body, params) {
  // (The native side throws k6's GoError in the init context, and reads the URL:
  // text, or `http.url` tagged as its template.)
  if (url === undefined || url === null) return unsent("invalid URL: '#<nil>'", 1020);
  let expected = mine().expected;
  if (params !== undefined && params !== null && Object.prototype.hasOwnProperty.call(params, 'responseCallback')) {
    expected = expectedOf(params.responseCallback);
    if (expected === false) return unsent('unsupported responseCallback', 0);
  }
  if (body !== null && body !== undefined && ArrayBuffer.isView(body)) {
    body = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  }
  return host.httpRequest(KIT, method, url, body, params, expected);
}

export function get(url, params) { return request('GET', url, null, params); }
export function head(url, params) { return request('HEAD', url, null, params); }
export function post(url, body, params) { return request('POST', url, body, params); }
export function put(url, body, params) { return request('PUT', url, body, params); }
export function patch(url, body, params) { return request('PATCH', url, body, params); }
export function del(url, body, params) { return request('DELETE', url, body, params); }
export function options(url, body, params) { return request('OPTIONS', url, body, params); }

// k6's batch: an array or an object of requests, each a URL, `[method, url, body,
// params]` or `{method, url, body, params}`; sent in parallel (at most 20 at once, 6
// per host, k6's defaults), the responses in the same shape.
export function batch(requests) {
  if (host.inInit()) throw goError('Making http requests in the init context is not supported');
  if (requests === null || typeof requests !== 'object') {
    throw goError('invalid http.batch() argument type ' + (requests === null ? 'null' : typeof requests));
  }
  const keys = Array.isArray(requests) ? null : Object.keys(requests);
  const items = keys === null ? requests : keys.map((k) => requests[k]);
  const calls = items.map((r) => {
    if (typeof r === 'string' || (r !== null && typeof r === 'object' && !Array.isArray(r) && typeof r.url === 'string' && typeof r.name === 'string' && r.clean_url !== undefined)) {
      return prepare('GET', r, null, undefined);
    }
    if (Array.isArray(r)) {
      if (r.length < 2) return prepare(r[0], undefined, null, undefined);
      return prepare(r[0], r[1], r[2], r[3]);
    }
    if (r !== null && typeof r === 'object') {
      return prepare(r.method === undefined ? 'GET' : r.method, r.url, r.body, r.params);
    }
    return ["invalid URL: '#" + String(r) + "'", 1020];
  });
  // As k6 (without `throw`): a request that cannot be made is warned about and
  // answered with an empty response; the others are sent.
  for (const c of calls) {
    if (c.length === 2) host.log('warn', 'A batch request failed error="' + c[0] + '"');
  }
  const sent = host.httpBatch(KIT, calls.filter((c) => c.length !== 2));
  let next = 0;
  const got = calls.map((c) => (c.length === 2 ? unsent(c[0], c[1]) : sent[next++]));
  if (keys === null) return got;
  const out = {};
  keys.forEach((k, i) => { out[k] = got[i]; });
  return out;
}

// http.url`...`: the URL, and its template as the name tag (`${}` for each value).
export function url(strings, ...values) {
  let s = '';
  let name = '';
  strings.forEach((str, i) => {
    s += str;
    name += str;
    if (i < values.length) {
      s += values[i];
      name += '${}';
    }
  });
  return { name, url: s, clean_url: s };
}

// The VU's cookie jar: a plain object of four functions, as k6's (`new
// http.CookieJar()` is one more view of the same jar here).
export function CookieJar() {
  return {
    clear: (u) => { host.httpJarClear(String(u)); },
    cookiesForURL: (u) => host.httpJarGet(u === undefined ? '' : String(u)),
    delete: (u, name) => { host.httpJarDelete(String(u), String(name)); },
    set: (u, name, value, opts) => host.httpJarSet(String(u), String(name), String(value), opts === undefined ? null : opts),
  };
}

export function cookieJar() {
  const s = mine();
  if (s.jar === undefined) s.jar = CookieJar();
  return s.jar;
}

export const OCSP_STATUS_GOOD = 'good';
export const OCSP_STATUS_REVOKED = 'revoked';
export const OCSP_STATUS_SERVER_FAILED = 'server_failed';
export const OCSP_STATUS_UNKNOWN = 'unknown';
export const TLS_1_0 = 'tls1.0';
export const TLS_1_1 = 'tls1.1';
export const TLS_1_2 = 'tls1.2';
export const TLS_1_3 = 'tls1.3';

export default {
  request, get, head, post, put, patch, del, options, batch,
  expectedStatuses, setResponseCallback, url, cookieJar, CookieJar,
  OCSP_STATUS_GOOD, OCSP_STATUS_REVOKED, OCSP_STATUS_SERVER_FAILED, OCSP_STATUS_UNKNOWN,
  TLS_1_0, TLS_1_1, TLS_1_2, TLS_1_3,
};
