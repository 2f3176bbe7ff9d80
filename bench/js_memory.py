#!/usr/bin/env python3
"""Memory and start time of k6 JavaScript VUs, Barrage against k6 1.1 (issue 14's floors).

Two measurements, each alternating Barrage (`barrage run SCRIPT --workers 1`) and k6
on the same script against sumflow on 127.0.0.1 (core 0; the tool on core 1):

- `mem N`: bench/k6/http.js with MODE=sleep (each VU: GET, then sleep 1 s) and N VUs.
  Peak RSS (`/usr/bin/time %M`), and for Barrage a breakdown of its mappings while all
  VUs sleep (`/proc/PID/smaps`, sampled at 2/3 of the run): the VUs' coroutine stacks
  (the 1 MiB read-write anonymous mappings), the malloc heap (`[heap]` and glibc's
  thread arenas), the rest; with BARRAGE_LOG at debug for `barrage_agent::js::memory`,
  QuickJS's own accounting per VU (after init, at exit, at exit after a full GC).
- `start N`: bench/k6/start.js (each VU GETs once, in its first iteration, then sleeps):
  the time from the tool's process start until sumflow has served N requests, i.e.
  until the last VU ran its first iteration (init of N VUs included, for both tools).

Tools: Barrage in each `BARRAGE_JS_ISOLATION`: `jsm` (`module`: one QuickJS context
per worker, a module instance per VU), `jss` (`context`: one runtime per worker, a
context per VU), `js` (`runtime`: a QuickJS runtime per VU); and `k6`.

Usage: bench/js_memory.py mem|start N [--reps R] [--duration S] [--tools js,jss,k6]; BENCH_BARRAGE,
BENCH_SUMFLOW, BENCH_K6 as for bench.py. Prints one JSON line per run and a summary.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (Sumflow, the binaries' paths)

STACK_KIB = 1024
ISOLATION = {"jsm": "module", "jss": "context", "js": "runtime"}


def smaps_breakdown(pid):
    """KiB resident by kind of mapping: stacks, heap, binary, other."""
    out = {"stacks_kib": 0, "stacks": 0, "heap_kib": 0, "binary_kib": 0, "other_kib": 0}
    kind = None
    size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                size = (int(m.group(2), 16) - int(m.group(1), 16)) // 1024
                perms, name = m.group(3), m.group(4).strip()
                if name == "[heap]":
                    kind = "heap_kib"
                elif name.startswith("/"):
                    kind = "binary_kib"
                elif not name and perms.startswith("rw") and size == STACK_KIB:
                    kind = "stacks_kib"
                    out["stacks"] += 1
                elif not name and perms.startswith("rw"):
                    # glibc's thread arenas (64 MiB reservations) and large mmap'd blocks.
                    kind = "heap_kib"
                else:
                    kind = "other_kib"
            elif line.startswith("Rss:"):
                out[kind] += int(line.split()[1])
    return out


def served(target):
    with urllib.request.urlopen(f"{target.totalizer}/v1/served", timeout=5) as r:
        return json.loads(r.read())["count"]


def command(tool, script, env):
    if tool == "k6":
        cmd = [str(bench.K6), "run", "--no-usage-report", "--quiet", "--no-color"]
    else:
        cmd = [str(bench.BARRAGE), "run", "--workers", "1", "--quiet", "--no-color", "--no-results"]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    return cmd + [str(script)]


def run(tool, what, vus, duration_s, target, out_dir, rep):
    script = bench.BENCH / "k6" / ("http.js" if what == "mem" else "start.js")
    env = {"MODE": "sleep", "VUS": vus, "DURATION": f"{duration_s}s",
           "TOTALIZER_URL": target.totalizer}
    time_file = out_dir / f"{what}{vus}-{tool}-{rep}.time"
    log_path = out_dir / f"{what}{vus}-{tool}-{rep}.log"
    full = (["/usr/bin/time", "-f", "%M %e %U %S", "-o", str(time_file),
             "taskset", "-c", bench.CLIENT_CORE] + command(tool, script, env))
    # The QuickJS tally walks every VU's heap: only for `mem` (it would slow `start`).
    proc_env = dict(os.environ, BARRAGE_LOG="warn,barrage_agent::js::memory=debug"
                    if what == "mem" else "warn")
    if tool != "k6":
        proc_env["BARRAGE_JS_ISOLATION"] = ISOLATION[tool]
    before = served(target)
    r = {"tool": tool, "what": what, "vus": vus, "rep": rep}
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, env=proc_env)
        sampled = False
        child = None
        while p.poll() is None:
            now = time.monotonic() - t0
            if child is None:
                # /usr/bin/time → taskset (exec'd) → the tool: its only child.
                pids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                      text=True).stdout.split()
                child = int(pids[0]) if pids else None
            if what == "start" and "all_running_s" not in r:
                if served(target) - before >= vus:
                    r["all_running_s"] = now
                    try:
                        # CPU the tool spent until then (all threads): load-independent.
                        r["all_running_cpu_s"] = bench.proc_cpu_s(child)
                    except (OSError, TypeError):
                        pass
            if what == "mem" and tool != "k6" and not sampled and child \
                    and now > duration_s * 2 / 3:
                r.update(smaps_breakdown(child))
                sampled = True
            time.sleep(0.02)
    rss_kib, wall, user, sys_ = time_file.read_text().strip().splitlines()[-1].split()[:4]
    r.update(rss_mib=int(rss_kib) / 1024, wall_s=float(wall), cpu_s=float(user) + float(sys_),
             requests=served(target) - before)
    text = log_path.read_text(errors="replace")
    r["quickjs"] = re.findall(r"QuickJS memory per VU at (\S+) \((\d+) VUs\): (.*)", text)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["mem", "start"])
    ap.add_argument("vus", type=int)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10, help="seconds of the scenario")
    ap.add_argument("--tools", default="jsm,jss,k6",
                    help="comma-separated: jsm, jss, js (Barrage: module, context, runtime isolation), k6")
    args = ap.parse_args()
    out_dir = Path(tempfile.mkdtemp(prefix="js_memory-", dir=bench.BENCH / "out"
                                    if (bench.BENCH / "out").is_dir() else None))
    target = bench.Sumflow(out_dir / "sumflow.log")
    runs = []
    try:
        for rep in range(args.reps):
            for tool in args.tools.split(","):
                r = run(tool, args.what, args.vus, args.duration, target, out_dir, rep)
                print(json.dumps(r), flush=True)
                runs.append(r)
    finally:
        target.stop()
    keys = ["rss_mib"] if args.what == "mem" else ["all_running_s", "all_running_cpu_s"]
    for tool in ("jsm", "jss", "js", "k6"):
        for key in keys:
            xs = [r[key] for r in runs if r["tool"] == tool and key in r]
            if xs:
                print(f"{tool}: {key} median {statistics.median(xs):.2f} of {xs}")
    print(f"logs in {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
