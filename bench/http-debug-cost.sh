#!/usr/bin/env bash
# What --http-debug costs, in instructions (callgrind: repeatable on a loaded machine).
# One VU, one worker, N GET requests to sumflow, the log to none (the dump is still
# built and formatted); per request = (total at 500 - total at 100) / 400, so start-up
# cancels out. BARRAGE names the binary to measure (default: this tree's debug build).
# MODES="off" measures only without the flag (for a binary from before it existed).
# Output in bench/out/http-debug-cost/.
set -u
cd "$(dirname "$0")/.."
root=$PWD
bin=${BARRAGE:-$root/target/debug/barrage}
sumflow=${SUMFLOW:-$root/target/debug/sumflow}
mkdir -p bench/out/http-debug-cost && cd bench/out/http-debug-cost
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
gp=$(port) hp=$(port)
"$sumflow" standalone --grpc-listen 127.0.0.1:$gp --http-listen 127.0.0.1:$hp > sumflow.log 2>&1 &
sf=$!
trap 'kill $sf 2>/dev/null' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$hp) 2>/dev/null && break; sleep 0.1; done
for n in 100 500; do
cat > t$n.yaml <<Y
options:
  scenarios:
    s: {executor: shared-iterations, vus: 1, iterations: $n, exec: f}
flows:
  f:
    - http: {url: "http://127.0.0.1:$hp/v1/results", headers: {x-a: "1"}}
Y
for mode in ${MODES:-off headers full}; do
  case $mode in off) f=();; headers) f=(--http-debug);; full) f=(--http-debug=full);; esac
  timeout 600 valgrind --tool=callgrind --callgrind-out-file=cg.$mode.$n "$bin" \
     --log-output none run t$n.yaml --workers 1 --quiet --no-results --no-summary "${f[@]}" > run.$mode.$n.log 2>&1
  tot=$(callgrind_annotate cg.$mode.$n 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{print $1}')
  # Inclusive instructions of the request path, per request (independent of run time).
  per() { callgrind_annotate --inclusive=yes cg.$mode.$n 2>/dev/null \
      | grep -m1 -E "^ *[0-9,]+ .*:$1 \[" | awk -v n=$n '{gsub(",","",$1); printf "%.1fk", $1/n/1000}'; }
  echo "$mode $n total=$tot send=$(per 'barrage_agent::http::client::HttpClient::send::\{\{closure\}\}') exchange=$(per 'barrage_agent::http::client::HttpClient::exchange::\{\{closure\}\}')"
done
done
