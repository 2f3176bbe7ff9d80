#!/usr/bin/env bash
# Instruction-level profile of Barrage on one bench workload (callgrind counts
# instructions, repeatable on a noisy machine; perf's hardware counters are
# not available in this VM). sumflow on core 0, Barrage under valgrind on
# core 1, --workers 1. Usage:
#   bench/profile.sh callgrind http-closed.yaml 4 [-e K=V ...]
#   bench/profile.sh massif http-sleep.yaml 4 -e VUS=1000
# Output in bench/out/profile-<tool>-<scenario>/ and the top functions on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=$1 scenario=$2 secs=$3; shift 3
out=bench/out/profile-$tool-${scenario%.yaml}
mkdir -p "$out"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
gp=$(port) hp=$(port)
taskset -c 0 target/release/sumflow standalone --grpc-listen 127.0.0.1:$gp --http-listen 127.0.0.1:$hp \
    >"$out/sumflow.log" 2>&1 &
sumflow=$!
trap 'kill $sumflow 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$hp) 2>/dev/null && break; sleep 0.1; done
cp target/release/barrage "$out/barrage"
case $tool in
    callgrind) vg=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out");;
    massif) vg=(valgrind --tool=massif --massif-out-file="$out/massif.out");;
esac
taskset -c 1 "${vg[@]}" "$out/barrage" run "bench/scenarios/$scenario" --workers 1 --quiet --no-color \
    --results "$out/summary.json" -e DURATION=${secs}s \
    -e ADDER_ADDR=127.0.0.1:$gp -e TOTALIZER_URL=http://127.0.0.1:$hp "$@" >"$out/run.log" 2>&1
python3 -c "import json;m=json.load(open('$out/summary.json'))['metrics'];print('iterations', m['iterations']['values']['count'], 'dropped', m.get('dropped_iterations',{}).get('values',{}).get('count',0))"
case $tool in
    callgrind)
        callgrind_annotate --inclusive=no "$out/callgrind.out" 2>/dev/null | head -45 > "$out/self.txt" || true
        callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null | head -70 > "$out/inclusive.txt" || true
        cat "$out/self.txt";;
    massif) ms_print "$out/massif.out" | head -120 > "$out/massif.txt" || true; cat "$out/massif.txt";;
esac
