#!/usr/bin/env bash
# kubectl for the deploy/ tests (`kubectl kustomize deploy/kustomize/...` must render). Debian 12's
# kubernetes-client (kubectl 1.20, kustomize v2.0.3) renders our trees exactly like current kubectl.
# Idempotent: skips the install when a kubectl is already on PATH.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v kubectl >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
kubectl version --client 2>/dev/null | head -1
