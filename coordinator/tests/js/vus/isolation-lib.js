// Module-level state of a local module: one instance per VU.
let n = 0;
export function bump() { n += 1; }
export function count() { return n; }
