// Idle VUs: the init code runs, then every iteration sleeps 1 s (k6 and the spike run it unchanged).
import { sleep } from 'k6';

export default function () {
  sleep(1);
}
