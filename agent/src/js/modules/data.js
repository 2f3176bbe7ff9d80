// k6/data: SharedArray, as k6 1.1 gives it: an array (Array.isArray, Array.prototype's
// methods, iteration) whose elements are parsed from the one copy the agent keeps, each
// access a fresh deeply frozen value, and that refuses every change.
import * as host from 'barrage:host';

function deepFreeze(v) {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze(v[k]);
  }
  return v;
}

// The index a property names ('1', not '01', '1.5' or '-1'), else -1.
function index(prop) {
  if (typeof prop !== 'string') return -1;
  const i = Number(prop);
  return Number.isInteger(i) && i >= 0 && String(i) === prop ? i : -1;
}

function immutable() {
  throw new TypeError('SharedArray is immutable');
}

function handler(id, len) {
  const read = (i) => deepFreeze(host.sharedArrayGet(id, i));
  const own = (prop) => {
    const i = index(prop);
    return i >= 0 && i < len;
  };
  return {
    get(target, prop, receiver) {
      if (prop === 'length') return len;
      const i = index(prop);
      if (i >= 0) return i < len ? read(i) : undefined;
      return Reflect.get(target, prop, receiver);
    },
    has(target, prop) {
      return own(prop) || Reflect.has(target, prop);
    },
    ownKeys() {
      const keys = new Array(len + 1);
      for (let i = 0; i < len; i++) keys[i] = String(i);
      keys[len] = 'length';
      return keys;
    },
    getOwnPropertyDescriptor(target, prop) {
      if (prop === 'length') {
        return { value: len, writable: true, enumerable: false, configurable: false };
      }
      if (own(prop)) {
        return { value: read(index(prop)), writable: true, enumerable: true, configurable: true };
      }
      return undefined;
    },
    set: immutable,
    deleteProperty: immutable,
    defineProperty: immutable,
    setPrototypeOf: immutable,
    preventExtensions: immutable,
  };
}

export function SharedArray(name, fn) {
  if (typeof fn !== 'function') {
    throw new Error("a function is expected as the second argument of SharedArray's constructor");
  }
  const [id, len] = host.sharedArrayCreate(String(name === undefined ? '' : name), fn);
  return new Proxy([], handler(id, len));
}

export default { SharedArray };
