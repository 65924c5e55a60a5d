#!/usr/bin/env bash
# Refresh the Debian package lists once, so later steps can apt-get install.
set -euo pipefail
apt-get update -qq
