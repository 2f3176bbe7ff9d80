// A handleSummary that throws: k6 logs it with its stack and prints the default summary.
export const options = { iterations: 2 };

export default function () {}

function inner() {
  throw new Error('boom in summary');
}

export function handleSummary(data) {
  return inner(data);
}
