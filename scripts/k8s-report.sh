#!/usr/bin/env bash
# make k8s-report: collects the report so far (GET /report, with its histograms) of every
# loadgen pod of the deployment through the Kubernetes API server's pod proxy, and merges them
# with `loadgen merge` into one exact fleet report (JSON and HTML).
#   K8S_NAMESPACE (mqtt-rr-bench)  LOADGEN_SELECTOR (app.kubernetes.io/name=loadgen)
#   LOADGEN_PORT (8090)  OUT (.run/k8s-report)  KUBECTL (kubectl)  LOADGEN_BIN (target/release/loadgen)
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
NS=${K8S_NAMESPACE:-mqtt-rr-bench}
SELECTOR=${LOADGEN_SELECTOR:-app.kubernetes.io/name=loadgen}
PORT=${LOADGEN_PORT:-8090}
OUT=${OUT:-.run/k8s-report}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}

die() { echo "k8s-report: $*" >&2; exit 1; }

[ -x "$LOADGEN_BIN" ] || die "no loadgen binary at $LOADGEN_BIN (make release, or set LOADGEN_BIN)"
command -v "$KUBECTL" >/dev/null 2>&1 || die "$KUBECTL not found (set KUBECTL)"

pods=$("$KUBECTL" -n "$NS" get pods -l "$SELECTOR" --field-selector=status.phase=Running \
  -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}') \
  || die "cannot list pods ($SELECTOR) in namespace $NS"
[ -n "$pods" ] || die "no running pod matches $SELECTOR in namespace $NS"

mkdir -p "$OUT"
files=()
for pod in $pods; do
  f="$OUT/$pod.json"
  # the API server proxies to the pod's port: no port-forward, nothing in the image
  "$KUBECTL" -n "$NS" get --raw "/api/v1/namespaces/$NS/pods/$pod:$PORT/proxy/report" >"$f.tmp" \
    || die "cannot read /report of pod $pod"
  mv "$f.tmp" "$f"
  files+=("$f")
  echo "collected $pod -> $f"
done

"$LOADGEN_BIN" merge "${files[@]}" -o "$OUT/merged.json" --html "$OUT/report.html"
echo "fleet report: $OUT/report.html (JSON: $OUT/merged.json, ${#files[@]} pods)"
