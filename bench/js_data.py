#!/usr/bin/env python3
"""k6 script data on Barrage (issue 14's data floor), on this machine, release build:

1. Shipping: the coordinator ships a 10 MB file to 3 real agent processes. Printed:
   the time from `barrage run` starting to the last agent's "run accepted" (it has
   read and checked the test), with the file and without it; the difference is what
   the file costs (reading it in the init run, base64 in the plan, 3 sends, 3 parses).
2. SharedArray: 100k rows of 5 fields under 200 VUs on one agent: the agent's peak
   RSS while the test runs, with 1 row and with 100k rows, against the rows' JSON size.

Usage: bench/js_data.py [BARRAGE]  (default target/release/barrage; build it first
with `cargo build --release -p barrage-coordinator`). Load goes to nobody: the scripts
make no requests.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BARRAGE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/barrage")


class Agent:
    def __init__(self, dir, name):
        self.err_path = os.path.join(dir, name + ".err")
        self.proc = subprocess.Popen(
            [BARRAGE, "agent", "--listen", "127.0.0.1:0", "--workers", "1"],
            stdout=subprocess.PIPE, stderr=open(self.err_path, "w"), text=True,
            env={**os.environ, "NO_COLOR": "1", "BARRAGE_LOG": "info"})
        self.addr = self.proc.stdout.readline().split()[-1]

    def accepted_times(self):
        """Unix times of the agent's "run accepted" lines."""
        out = []
        for line in open(self.err_path, errors="replace"):
            if "run accepted" in line:
                stamp = line.split()[0].rstrip("Z")[:26]
                t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
                out.append(t.timestamp())
        return out

    def rss(self):
        try:
            for line in open(f"/proc/{self.proc.pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def run(dir, script, agents, workers="1"):
    path = os.path.join(dir, "t.js")
    with open(path, "w") as f:
        f.write(script)
    args = [BARRAGE, "run", path, "-q", "--workers", workers, "--results",
            os.path.join(dir, "out.json")]
    for a in agents:
        args += ["--agent", a.addr]
    start = time.time()
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit(f"barrage run failed ({p.returncode}): {p.stderr[-2000:]}")
    return start, json.load(open(os.path.join(dir, "out.json")))


SHIP = """const big = %s;
export const options = { scenarios: { s: { executor: 'per-vu-iterations', vus: 3, iterations: 1 } } };
export default function () { if (big.byteLength !== %d) throw new Error('wrong size ' + big.byteLength); }
"""

ROWS = """import { SharedArray } from 'k6/data';
import { sleep } from 'k6';
const rows = new SharedArray('rows', () => Array.from({ length: %d }, (_, i) =>
  ({ id: i, name: 'user-' + i, email: 'user-' + i + '@example.com', age: i %% 90, city: 'city-' + (i %% 1000) })));
export const options = { scenarios: { s: { executor: 'constant-vus', vus: 200, duration: '3s' } } };
export default function () { const r = rows[(__VU * 7919 + __ITER) %% rows.length]; if (!r.email) throw 1; sleep(0.3); }
"""


def shipping(dir):
    size = 10_000_000
    with open(os.path.join(dir, "big.bin"), "wb") as f:
        f.write(os.urandom(size))
    agents = [Agent(dir, f"a{i}") for i in range(3)]
    try:
        results = {}
        for label, expr, n in [("without a file", "new ArrayBuffer(0)", 0),
                               ("with 10 MB", "open('./big.bin', 'b')", size)]:
            times = []
            for _ in range(3):
                seen = [len(a.accepted_times()) for a in agents]
                start, summary = run(dir, SHIP % (expr, n), agents)
                last = max(a.accepted_times()[k] for a, k in zip(agents, seen))
                times.append(last - start)
                skews = [a.get("start_skew_ms") for a in summary["barrage"]["agents"]]
            results[label] = min(times)
            print(f"  {label}: last agent accepted {min(times) * 1e3:.0f} ms after `barrage run` "
                  f"started (best of 3; runs: {', '.join(f'{t * 1e3:.0f}' for t in times)} ms); "
                  f"start skews of the last run: {', '.join(f'{s:+.1f}' for s in skews)} ms")
        cost = results["with 10 MB"] - results["without a file"]
        print(f"  the 10 MB file costs {cost * 1e3:.0f} ms to ship to 3 agents (floor: 2000 ms)")
    finally:
        for a in agents:
            a.stop()


def shared_array(dir):
    rows = 100_000
    json_bytes = sum(len(json.dumps({"id": i, "name": f"user-{i}", "email": f"user-{i}@example.com",
                                     "age": i % 90, "city": f"city-{i % 1000}"}, separators=(",", ":")))
                     for i in range(rows))
    peaks = {}
    for n in (1, rows):
        agent = Agent(dir, f"rows{n}")
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], agent.rss())
                time.sleep(0.05)

        t = threading.Thread(target=sample)
        t.start()
        try:
            run(dir, ROWS % n, [agent], workers="2")
        finally:
            done.set()
            t.join()
            agent.stop()
        peaks[n] = peak[0]
    mib = lambda b: b / (1 << 20)
    growth = peaks[rows] - peaks[1]
    print(f"  agent peak RSS, 200 VUs on 2 workers: {mib(peaks[1]):.1f} MiB with 1 row, "
          f"{mib(peaks[rows]):.1f} MiB with {rows} rows ({mib(json_bytes):.1f} MiB of JSON): "
          f"+{mib(growth):.1f} MiB = {growth / json_bytes:.2f}x the data (one copy per VU would be 200x)")


def main():
    if not os.path.exists(BARRAGE):
        sys.exit(f"{BARRAGE} not found: cargo build --release -p barrage-coordinator")
    with tempfile.TemporaryDirectory() as dir:
        print("shipping a 10 MB file to 3 agents:")
        shipping(dir)
        print("SharedArray of 100k rows:")
        shared_array(dir)


if __name__ == "__main__":
    main()
