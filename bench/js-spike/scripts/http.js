// Closed loop: one GET per iteration, no sleep (k6 and the spike run it unchanged).
import http from 'k6/http';

const url = __ENV.URL;

export default function () {
  http.get(url);
}
