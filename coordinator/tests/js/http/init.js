// A request in the init context: k6 refuses the script.
import http from 'k6/http';

http.get(`http://${__ENV.ADDR}/echo`);

export default function () {}
