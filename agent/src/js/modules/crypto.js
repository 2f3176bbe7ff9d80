// k6/crypto: hashes, HMACs and random bytes (over barrage:host's RustCrypto natives).
import * as host from 'barrage:host';
import { bytesOf } from 'k6/encoding';

const ALGORITHMS = ['md4', 'md5', 'sha1', 'sha256', 'sha384', 'sha512', 'sha512_224', 'sha512_256', 'ripemd160'];

const enc = (e) => (e === undefined || e === null ? '' : String(e));

function hasher(alg) {
  return (input, outputEncoding) => host.cryptoHash(alg, bytesOf(input), enc(outputEncoding));
}

export const md4 = hasher('md4');
export const md5 = hasher('md5');
export const sha1 = hasher('sha1');
export const sha256 = hasher('sha256');
export const sha384 = hasher('sha384');
export const sha512 = hasher('sha512');
export const sha512_224 = hasher('sha512_224');
export const sha512_256 = hasher('sha512_256');
export const ripemd160 = hasher('ripemd160');

export function hmac(algorithm, secret, data, outputEncoding) {
  return host.cryptoHmac(String(algorithm), bytesOf(secret), bytesOf(data), enc(outputEncoding));
}

function checked(algorithm) {
  const alg = String(algorithm);
  if (!ALGORITHMS.includes(alg)) throw new TypeError('invalid algorithm: ' + alg);
  return alg;
}

// A hash object (keys as k6's): its updates are kept and hashed together at each
// digest, so a second digest gives the same.
function hashObject(run) {
  const parts = [];
  return {
    digest: (outputEncoding) => run(parts, enc(outputEncoding)),
    update: (data) => {
      parts.push(bytesOf(data));
    },
  };
}

export function createHash(algorithm) {
  const alg = checked(algorithm);
  return hashObject((parts, e) => host.cryptoHash(alg, parts, e));
}

export function createHMAC(algorithm, secret) {
  const alg = checked(algorithm);
  const key = bytesOf(secret);
  return hashObject((parts, e) => host.cryptoHmac(alg, key, parts, e));
}

export function randomBytes(size) {
  return host.cryptoRandomBytes(Number(size));
}

export function hexEncode(data) {
  return host.hexEncode(bytesOf(data));
}

export default {
  md4, md5, sha1, sha256, sha384, sha512, sha512_224, sha512_256, ripemd160,
  hmac, createHash, createHMAC, randomBytes, hexEncode,
};
