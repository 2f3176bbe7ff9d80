#!/usr/bin/env bash
# Start spread on one host (clocks agree, so an agent's start on the shared clock is
# its composed offset estimate plus its own skew): 5 agents direct against the same
# 5 behind 2 relays (2 + 2) and one direct, alternated, 5 runs each.
# Needs `cargo build` (debug binaries); PORT (default 18089) for sumflow's HTTP.
set -euo pipefail
bin=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/debug
B=$bin/barrage
S=$bin/sumflow
d=$(mktemp -d)
$S standalone --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:${PORT:-18089} >/dev/null 2>&1 &
sut=$!
pids=()
agents=()
for i in 1 2 3 4 5; do
  $B agent --listen 127.0.0.1:0 --workers 1 > "$d/a$i" 2>/dev/null & pids+=($!)
done
sleep 1
for i in 1 2 3 4 5; do agents+=($(awk '{print $NF}' "$d/a$i")); done
$B relay --listen 127.0.0.1:0 --agent ${agents[0]} --agent ${agents[1]} > "$d/r0" 2>/dev/null & pids+=($!)
$B relay --listen 127.0.0.1:0 --agent ${agents[2]} --agent ${agents[3]} > "$d/r1" 2>/dev/null & pids+=($!)
sleep 1
r0=$(awk '{print $NF}' "$d/r0"); r1=$(awk '{print $NF}' "$d/r1")
cat > "$d/t.yaml" <<'Y'
options:
  scenarios:
    s: {executor: constant-arrival-rate, rate: 50, timeUnit: 1s, duration: 2s, preAllocatedVUs: 5, maxVUs: 10, exec: get}
flows:
  get:
    - http: {method: GET, url: "http://127.0.0.1:PORT/v1/results"}
Y
sed -i "s#PORT#${PORT:-18089}#" "$d/t.yaml"
spread() {
python3 - "$1" <<'P'
import json,sys
s=json.load(open(sys.argv[1]))["barrage"]["agents"]
leaves=[b for a in s for b in (a["behind"] or [a])]
t=[a["clock_offset_ms"]+a["start_skew_ms"] for a in leaves]
print(f"{max(t)-min(t):.3f}")
P
}
for rep in 1 2 3 4 5; do
  $B run "$d/t.yaml" -q --no-summary --results "$d/direct.json" $(for a in "${agents[@]}"; do echo --agent $a; done) >/dev/null 2>&1 || true
  dspread=$(spread "$d/direct.json")
  $B run "$d/t.yaml" -q --no-summary --results "$d/relay.json" --agent $r0 --agent $r1 --agent ${agents[4]} >/dev/null 2>&1 || true
  rspread=$(spread "$d/relay.json")
  echo "rep $rep: direct ${dspread} ms, through relays ${rspread} ms"
done
kill "${pids[@]}" $sut 2>/dev/null || true
rm -rf "$d"
