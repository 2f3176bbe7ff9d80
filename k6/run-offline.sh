#!/usr/bin/env bash
# Runs a script of k6/scripts with k6 on a machine without internet: k6 fetches
# https://jslib.k6.io/ imports, so this runs a copy of the script, beside it (its
# relative imports and proto paths still hold), whose jslib.k6.io URLs point at the
# copies Barrage vendors in agent/src/js/jslib/. Everything else is unchanged.
#   k6/run-offline.sh k6/scripts/adder-grpc-test.js -e DURATION=10s ...
# K6 (default: k6 on PATH) names the k6 binary.
set -euo pipefail
script="$1"; shift
k6="${K6:-k6}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(cd "$(dirname "$script")" && pwd)"
copy="$dir/.offline-$(basename "$script")"
trap 'rm -f "$copy"' EXIT
sed "s#https\?://jslib\.k6\.io/#file://$root/agent/src/js/jslib/#g" "$script" > "$copy"
set +e
"$k6" run --no-usage-report "$@" "$copy"
code=$?
set -e
exit $code
