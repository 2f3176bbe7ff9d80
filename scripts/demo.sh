#!/usr/bin/env bash
# The main job: a ~30 s full-flow load test (SPEC.md test 3) against sumflow
# standalone (in-process bus) with Barrage's embedded agent. Prints the summary and
# writes results/full-flow-results.json. Extra arguments go to `barrage run`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p sumflow -p barrage-coordinator
bin="${CARGO_TARGET_DIR:-target}/release"
grpc="${DEMO_GRPC:-127.0.0.1:50051}"
http="${DEMO_HTTP:-127.0.0.1:8080}"
"$bin/sumflow" standalone --grpc-listen "$grpc" --http-listen "$http" &
sut=$!
trap 'kill $sut 2>/dev/null; wait $sut 2>/dev/null' EXIT
for _ in $(seq 1 50); do
  if (exec 3<>"/dev/tcp/${http%:*}/${http#*:}") 2>/dev/null; then break; fi
  sleep 0.1
done
export ADDER_ADDR="$grpc" TOTALIZER_URL="http://$http"
set +e
"$bin/barrage" run scenarios/full-flow.yaml -e DURATION="${DURATION:-30s}" \
  --results results/full-flow-results.json "$@"
code=$?
set -e
exit $code
