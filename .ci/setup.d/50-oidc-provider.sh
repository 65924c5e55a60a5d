#!/usr/bin/env bash
# The auth tests start a real OIDC provider (npm oidc-provider) on 127.0.0.1: install Node.js when the
# machine lacks it, then the provider's locked dependencies. Idempotent: `npm ci` runs only when the
# lock file differs from the one last installed.
set -euo pipefail
cd "$(dirname "$0")/../../tests/auth/oidc_provider"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get install -y -qq nodejs npm >/dev/null
fi
if ! cmp -s package-lock.json node_modules/.installed-lock.json; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-lock.json
fi
echo "oidc-provider $(node -p "require('./node_modules/oidc-provider/package.json').version") on node $(node --version)"
