// A second importer of isolation-lib.js: the same instance as the script's own.
import { bump } from './isolation-lib.js';
export function bumpVia() { bump(); }
