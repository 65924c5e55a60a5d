#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the store tests (marker `postgres`).
# The tests start their own throwaway cluster (initdb in a temp dir, 127.0.0.1, random port) from
# /usr/lib/postgresql/*/bin, so the cluster Debian creates at install time is not needed: it is
# stopped to free port 5432 and memory. Idempotent: skips the install when initdb is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _port status _rest; do
    if [ "$status" = online ]; then pg_ctlcluster "$version" "$cluster" stop || true; fi
  done
fi
ls -d /usr/lib/postgresql/*/bin/initdb
