#!/usr/bin/env bash
# The k8s targets check for a cluster before kubectl does anything: without kubectl, without a
# context (kubectl would fall back to localhost:8080) and with an unreachable API server, one
# line says so and how to point kubectl at a cluster; nothing is applied.
. "$(dirname "$0")/lib.sh"

KUBECTL_BIN=${KUBECTL_BIN:-$(command -v kubectl || echo .venv-validate/bin/kubectl)}
if [ ! -x "$KUBECTL_BIN" ]; then
  bash scripts/install-validators.sh >/dev/null 2>&1
  KUBECTL_BIN=.venv-validate/bin/kubectl
fi

# our_lines OUTPUT: the lines that are not make's own "*** ... Error" line
our_lines() { grep -Ev '^make(\[[0-9]+\])?: \*\*\*' <<<"$1"; }

out=$(make --no-print-directory k8s-deploy-1m KUBECTL=/nonexistent/kubectl 2>&1); rc=$?
check "without kubectl: k8s-deploy-1m fails (rc $rc)" test "$rc" -ne 0
contains "without kubectl: says so" "$out" "^k8s: kubectl not found"
check "without kubectl: one line of ours" test "$(our_lines "$out" | wc -l)" -eq 1

if [ -x "$KUBECTL_BIN" ]; then
  empty=$T_TMP/empty-kubeconfig; : > "$empty"
  for target in k8s-deploy-1m k8s-deploy-kind k8s-status k8s-cleanup; do
    out=$(KUBECONFIG=$empty make --no-print-directory "$target" KUBECTL="$KUBECTL_BIN" 2>&1); rc=$?
    check "no context: $target fails (rc $rc)" test "$rc" -ne 0
    contains "no context: $target says no cluster is configured and how to point at one" "$out" \
      "^k8s: no Kubernetes cluster configured .*localhost:8080.*KUBECONFIG=.*use-context"
    check "no context: $target prints one line of ours" test "$(our_lines "$out" | wc -l)" -eq 1
    not_contains "no context: $target runs no kubectl apply/delete" "$out" "validate=false|apply|deleted|refused"
  done

  port=$(free_port)
  cat > "$T_TMP/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:$port"}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
users:
- name: nobody
  user: {token: x}
KC
  start=$(date +%s)
  out=$(KUBECONFIG=$T_TMP/kubeconfig K8S_PREFLIGHT_TIMEOUT=3s make --no-print-directory k8s-deploy-1m \
        KUBECTL="$KUBECTL_BIN" 2>&1); rc=$?
  took=$(( $(date +%s) - start ))
  check "unreachable cluster: k8s-deploy-1m fails (rc $rc)" test "$rc" -ne 0
  contains "unreachable cluster: names the server and the context" "$out" \
    "^k8s: no Kubernetes cluster reachable at https://127.0.0.1:$port \(context 'nowhere'"
  check "unreachable cluster: one line of ours" test "$(our_lines "$out" | wc -l)" -eq 1
  check "unreachable cluster: answered within the timeout (${took}s)" test "$took" -le 20
else
  fail "kubectl is needed for the context checks (scripts/install-validators.sh installs one)"
fi
finish
