import http from 'k6/http';

function setUp() {
  throw new Error('init boom');
}
setUp();

export default function () {
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
}
