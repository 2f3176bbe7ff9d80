#!/usr/bin/env bash
# How long Ctrl-C takes to stop a run with many VUs (issue 12: any run stops within a
# second, summary written). For each VU count: a constant-vus run whose VUs sleep 1 s,
# SIGINT once every VU is up, and the time from the signal to the process's exit
# (summary JSON written), with peak RSS. `--baseline PATH` runs another `barrage`
# alternately for a same-run ratio. Load: none (the VUs only sleep).
#   bench/stop-latency.sh [--baseline PATH] [VUS ...]      (default: 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=""
if [ "${1:-}" = "--baseline" ]; then baseline=$2; shift 2; fi
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(100000 1000000)
bin=${BENCH_BARRAGE:-target/release/barrage}
[ -x "$bin" ] || cargo build --release --bin barrage
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
run() { # binary vus -> "seconds-to-exit peak-kb interrupted"
  local b=$1 n=$2
  cat >"$out/s.yaml" <<YAML
options: {scenarios: {s: {executor: constant-vus, vus: $n, duration: 10m}}}
flows: {f: [{sleep: 1s}]}
YAML
  /usr/bin/time -f "%M" -o "$out/rss" "$b" run "$out/s.yaml" --results "$out/sum.json" -q \
    >/dev/null 2>"$out/err" &
  local pid=$! child
  # Wait until every VU is up: the process's RSS has stopped growing for a second
  # (at least 2 s in; at most 60 s).
  local last=0 now stable=0
  for i in $(seq 600); do
    sleep 0.1
    child=$(pgrep -P "$pid" barrage || true)
    now=$(awk '/VmRSS/{print $2}' "/proc/${child:-$pid}/status" 2>/dev/null || echo 0)
    if [ "$now" -le $((last + last / 100)) ]; then stable=$((stable + 1)); else stable=0; fi
    last=$now
    if [ "$i" -ge 20 ] && [ "$stable" -ge 10 ]; then break; fi
  done
  local t0 t1
  t0=$(date +%s.%N)
  kill -INT "${child:-$pid}"
  wait "$pid" || true
  t1=$(date +%s.%N)
  local inter
  inter=$(python3 -c "import json;print(int(json.load(open('$out/sum.json'))['metrics']['interrupted_iterations']['values']['count']))" 2>/dev/null || echo "?")
  echo "$(echo "$t1 - $t0" | bc) $(tail -1 "$out/rss") $inter"
}
printf '| VUs | build | SIGINT to exit, s | peak RSS, MB | interrupted |\n|---|---|---|---|---|\n'
for n in "${counts[@]}"; do
  for rep in 1 2; do
    for b in "$bin" $baseline; do
      read -r secs kb inter < <(run "$b" "$n")
      name=$([ "$b" = "$bin" ] && echo this || echo baseline)
      printf '| %s | %s | %.2f | %d | %s |\n' "$n" "$name" "$secs" $((kb / 1024)) "$inter"
    done
  done
done
