#!/usr/bin/env bash
# Runs every check and test: formatting (cargo fmt --check), lints (cargo clippy,
# warnings are errors), the workspace's cargo tests, then the deploy validators
# (deploy/validate.sh). sumflow's Kafka tests need the tansu broker
# (a Kafka-protocol broker from crates.io); it is installed once into $TANSU_ROOT
# (default /opt/tansu, or ~/.local/tansu when /opt is not writable).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TANSU_BIN:-}" ]; then
  root="${TANSU_ROOT:-/opt/tansu}"
  if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then root="$HOME/.local/tansu"; fi
  if [ ! -x "$root/bin/tansu" ]; then
    echo "installing tansu 0.6.0 into $root (once; about 15 minutes on 2 cores)" >&2
    cargo install tansu --version 0.6.0 --locked --features dynostore --root "$root"
  fi
  export TANSU_BIN="$root/bin/tansu"
fi

scripts/test-tools.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
bash deploy/validate.sh
