// The globals k6 gives every script: console and open().
import * as host from 'barrage:host';

function show(v) {
  if (typeof v === 'string') return v;
  if (v instanceof Error) return String(v);
  if (v === undefined) return 'undefined';
  if (typeof v === 'function') return '[function ' + (v.name || 'anonymous') + ']';
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s;
  } catch (e) {
    return String(v);
  }
}

const line = (level) => (...args) => host.log(level, args.map(show).join(' '));

globalThis.console = {
  log: line('info'),
  info: line('info'),
  warn: line('warn'),
  error: line('error'),
  debug: line('debug'),
  trace: line('debug'),
};

// A path relative to the module that calls open(), as in k6; 'b': an ArrayBuffer.
globalThis.open = function open(path, mode) {
  return host.readFile(String(path), mode === 'b');
};
