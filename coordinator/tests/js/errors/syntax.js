import http from 'k6/http';

export default function () {
  let x = ;
  http.get(`${__ENV.TOTALIZER_URL}/v1/results`);
}
