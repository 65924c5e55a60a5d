#!/usr/bin/env bash
# kubectl for the stand-in cluster's tests (`kubectl get`/`kubectl create job` against the devcluster stand-in).
# Uses the machine's kubectl when there is one, else Debian's kubernetes-client. Idempotent.
set -euo pipefail
if ! command -v kubectl >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
kubectl version --client 2>/dev/null | head -1 || true
