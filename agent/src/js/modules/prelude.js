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

globalThis.open = function open(path, mode) {
  const text = host.readFile(String(path));
  if (mode === 'b') {
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
    return bytes.buffer;
  }
  return text;
};
