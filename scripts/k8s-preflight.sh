#!/usr/bin/env bash
# Pre-flight of the k8s-* targets that talk to a cluster: kubectl exists, a context is chosen (so
# kubectl does not fall back to http://localhost:8080, which is the worker's metrics port while
# `make up` runs), and that cluster answers within K8S_PREFLIGHT_TIMEOUT (5s). Otherwise it
# prints one line saying what is missing and how to point kubectl at a cluster, and exits 1.
# Env: KUBECTL (kubectl), KUBECONFIG (kubectl's own), K8S_PREFLIGHT_TIMEOUT.
set -uo pipefail
KUBECTL=${KUBECTL:-kubectl}
TIMEOUT=${K8S_PREFLIGHT_TIMEOUT:-5s}
how="point kubectl at a cluster: KUBECONFIG=/path/to/kubeconfig, or kubectl config use-context NAME (kind create cluster makes one)"

if ! command -v "$KUBECTL" >/dev/null 2>&1; then
  echo "k8s: kubectl not found ('$KUBECTL'): install it (or set KUBECTL=/path/to/kubectl), then $how" >&2
  exit 1
fi
ctx=$("$KUBECTL" config current-context 2>/dev/null)
server=$("$KUBECTL" config view --minify -o 'jsonpath={.clusters[0].cluster.server}' 2>/dev/null)
if [ -z "$ctx" ] || [ -z "$server" ]; then
  echo "k8s: no Kubernetes cluster configured (no current context; kubectl would try localhost:8080, the worker's metrics port under make up): $how" >&2
  exit 1
fi
if ! "$KUBECTL" --request-timeout="$TIMEOUT" cluster-info >/dev/null 2>&1; then
  echo "k8s: no Kubernetes cluster reachable at $server (context '$ctx', waited $TIMEOUT): start it, or $how" >&2
  exit 1
fi
echo "k8s: context '$ctx' at $server"
