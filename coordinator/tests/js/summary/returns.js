// What handleSummary returns, checked as k6 checks it (MODE picks the return).
export const options = { iterations: 1 };

export default function () {}

export function handleSummary(data) {
  switch (__ENV.MODE) {
    case 'undefined': return undefined;
    case 'number': return { stdout: 5 };
    case 'string': return 'text';
    case 'promise': return Promise.resolve({ stdout: 'FROM-PROMISE\n' });
    default: return {};
  }
}
