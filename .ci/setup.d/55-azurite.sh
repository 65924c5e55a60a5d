#!/usr/bin/env bash
# The gs/az filer tests start Azurite (npm, the Azure Storage emulator) on 127.0.0.1: install Node.js
# when the machine lacks it, then Azurite's locked runtime dependencies (~190 MB, ~30 s). Idempotent:
# `npm ci` runs only when the lock file differs from the one last installed.
set -euo pipefail
cd "$(dirname "$0")/../../tests/filer/azurite"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s package-lock.json node_modules/.installed-lock.json; then
  npm ci --omit=dev --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock.json
fi
echo "azurite $(node -p "require('./node_modules/azurite/package.json').version") on node $(node --version)"
