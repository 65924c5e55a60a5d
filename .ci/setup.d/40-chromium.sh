#!/usr/bin/env bash
# Install Debian's chromium for the dashboard tests (tests/dashboard, marker `browser`).
# Playwright's own browser downloads cannot be reached from CI, so the tests drive /usr/bin/chromium.
# Idempotent: skips the install when chromium is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v chromium >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
fi
chromium --version
