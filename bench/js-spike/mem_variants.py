#!/usr/bin/env python3
"""Idle memory per VU for the memory variants (bench/results/2026-12-01-js-spike.md,
"Memory per VU: where it goes"). Each variant: `js-spike run --script scripts/idle.js
--vus N --settle 2` plus its flags; per_vu_kib = (RSS after settle - RSS after compile) / N.
Binaries: BIN_<name> env vars or /work/tgt-jsmem/js-spike.<name> (a4096 = stock
quickjs-ng arena, a1024 / aoff = rquickjs-sys built with -DJS_ARENA_SIZE=1024 /
-DJS_ARENA_OFF, see quickjs-arena.patch)."""
import json, os, statistics, subprocess, sys

K6SET = "date,eval,regexp,json,mapset,typedarrays,promise"
VARIANTS = [
    ("baseline (Context::full, 1 MiB stack)", "a4096", [], {}),
    ("k6 intrinsics only (" + K6SET + ")", "a4096", ["--intrinsics", K6SET], {}),
    ("Promise only (floor; modules need it)", "a4096", ["--intrinsics", "promise"], {}),
    ("run_gc after init + gc threshold 64 KiB", "a4096", ["--gc-after-init", "1", "--gc-threshold", "65536"], {}),
    ("256 KiB coroutine stack", "a4096", ["--stack-kib", "256"], {}),
    ("MALLOC_ARENA_MAX=1", "a4096", [], {"MALLOC_ARENA_MAX": "1"}),
    ("mimalloc (global + QuickJS's allocator)", "a4096", ["--qjs-alloc", "mimalloc"], {"JSMEM_GLOBAL": "mimalloc"}),
    ("QuickJS arenas of 1 KiB (patched)", "a1024", [], {}),
    ("QuickJS arenas off (patched)", "aoff", [], {}),
    ("arenas off + k6 intrinsics", "aoff", ["--intrinsics", K6SET], {}),
]

def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    ns = [1000, 10000]
    out = []
    for name, binary, flags, env in VARIANTS:
        b = os.environ.get("BIN_" + binary, f"/work/tgt-jsmem/js-spike.{binary}")
        row = [name]
        for n in ns:
            xs = []
            for _ in range(reps):
                p = subprocess.run([b, "run", "--script", "scripts/idle.js", "--vus", str(n), "--settle", "2", *flags],
                                   env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
                j = json.loads(p.stdout.strip().splitlines()[-1])
                assert j["init_errors"] == 0, j
                xs.append(j["per_vu_kib"])
            row.append(f"{statistics.median(xs):.1f} [{min(xs):.1f}..{max(xs):.1f}]")
        print(" | ".join(row), flush=True)
        out.append(row)
    print("| variant | KiB/idle VU, 1,000 VUs | KiB/idle VU, 10,000 VUs |\n|---|---|---|")
    for r in out:
        print("| " + " | ".join(r) + " |")

if __name__ == "__main__":
    main()
