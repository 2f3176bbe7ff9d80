// Throws in every iteration for 2 s: the log stays bounded.
export const options = { scenarios: { s: { executor: 'constant-vus', vus: 2, duration: '2s' } } };

export default function () {
  throw new Error('every time');
}
