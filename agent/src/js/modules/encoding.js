// k6/encoding: b64encode, b64decode (k6's alphabets std, rawstd, url, rawurl).
import * as host from 'barrage:host';

// Typed arrays and DataViews as the ArrayBuffer of their bytes (k6 takes them as []byte).
export function bytesOf(v) {
  if (ArrayBuffer.isView(v)) return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength);
  return v;
}

export function b64encode(input, encoding) {
  return host.b64encode(bytesOf(input), encoding === undefined ? 'std' : String(encoding));
}

export function b64decode(input, encoding, format) {
  return host.b64decode(bytesOf(input), encoding === undefined ? 'std' : String(encoding), format === 's');
}

export default { b64encode, b64decode };
