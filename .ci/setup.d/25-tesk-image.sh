#!/usr/bin/env bash
# Build the tesk image from deploy/Dockerfile with podman, without any registry, as `tesk:<version>`.
#
# No registry is reachable, so the Dockerfile's base image (its FROM line, python:3.11-slim-bookworm)
# is replaced by a local stand-in of the same name: Debian bookworm from debootstrap, using the mirror
# and keyring apt uses on this host, with Debian's python3.11, pip and venv. Like the official image it
# has no EXTERNALLY-MANAGED marker, so the Dockerfile's `pip install` works as written. Its CA bundle
# is this host's, as an image built behind a TLS-inspecting proxy would carry, so pip inside
# `podman build` (host network) reaches the package index exactly as the host's pip does.
#
# Idempotent and quick when nothing changed: the base carries a label with the hash of this script and
# of the CA bundle, the tesk image one with the hash of the build inputs (Dockerfile, .dockerignore,
# pyproject.toml, README.md, src/, the base image's id); a matching label skips the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
started=$(date +%s)
say() { echo "tesk-image: $* ($(( $(date +%s) - started ))s)"; }

ca_bundle=/etc/ssl/certs/ca-certificates.crt
version=$(sed -n 's/^version *= *"\(.*\)"$/\1/p' pyproject.toml | head -1)
# Every FROM image that is not an earlier stage's name; the Dockerfile builds from one.
mapfile -t bases < <(awk 'toupper($1)=="FROM"{print $2} toupper($3)=="AS"{print "stage:" $4}' deploy/Dockerfile |
  awk '/^stage:/{stages[substr($0,7)]=1; next} !($0 in stages)' | sort -u)
if [ "${#bases[@]}" -ne 1 ]; then
  echo "tesk-image: deploy/Dockerfile must build FROM exactly one base image, found: ${bases[*]}" >&2
  exit 1
fi
base=${bases[0]}
case "$base" in  # the name podman resolves the FROM line to
  */*) first=${base%%/*}; case "$first" in *.*|*:*|localhost) ;; *) base="docker.io/$base" ;; esac ;;
  *) base="docker.io/library/$base" ;;
esac

label() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# --- the base image stand-in ---------------------------------------------------------------------
base_hash=$(cat "$0" "$ca_bundle" | sha256sum | cut -c1-16)
if [ "$(label "$base" tesk.standin-base)" = "$base_hash" ]; then
  say "base $base is current (label tesk.standin-base=$base_hash)"
else
  # The mirror and keyring of apt's first bookworm source (deb822 .sources or one-line .list).
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  keyring=$(awk '/^Signed-By:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1=="deb" && $0 ~ /bookworm/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  fi
  if [ -z "$mirror" ]; then
    echo "tesk-image: no Debian mirror found in /etc/apt/sources.list*; debootstrap needs one" >&2
    exit 1
  fi
  keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
  root=$(mktemp -d /var/tmp/tesk-base.XXXXXX)
  trap 'umount -R "$root/proc" "$root/sys" 2>/dev/null || true; rm -rf --one-file-system "$root"' EXIT
  say "debootstrap bookworm from $mirror into $root"
  debootstrap --variant=minbase --keyring="$keyring" \
    --include=python3.11,python3-pip,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  say "debootstrap done; importing as $base"
  tar -C "$root" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL tesk.standin-base=$base_hash" - "$base" >/dev/null
  podman run --rm --network none "$base" python3 -c 'import sys, venv, pip; print("base python", sys.version.split()[0], "pip", pip.__version__)'
  say "base $base ready"
fi

# --- the tesk image ------------------------------------------------------------------------------
image=tesk:$version
source_hash=$( {
  podman image inspect --format '{{.Id}}' "$base"
  sha256sum deploy/Dockerfile .dockerignore pyproject.toml README.md
  find src -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
if [ "$(label "$image" tesk.source-hash)" = "$source_hash" ]; then
  say "$image is current (label tesk.source-hash=$source_hash)"
else
  previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  say "podman build -f deploy/Dockerfile -t $image"
  podman build --pull=never --network host --label "tesk.source-hash=$source_hash" \
    -f deploy/Dockerfile -t "$image" . >/var/tmp/tesk-image-build.log 2>&1 ||
    { tail -30 /var/tmp/tesk-image-build.log >&2; exit 1; }
  current=$(podman image inspect --format '{{.Id}}' "$image")
  # The previous tesk image and the build stages (dangling, with this build's label) are of no further use;
  # one still used by a container is left for later.
  stale=$(podman images -q --filter dangling=true --filter label=tesk.source-hash)
  [ -n "$previous" ] && [ "$previous" != "$current" ] && stale="$stale $previous"
  for id in $stale; do podman rmi "$id" >/dev/null 2>&1 || true; done
  say "built $image"
fi
podman run --rm --network none --entrypoint python3 "$image" -c \
  'import os, tesk; print("tesk", tesk.__version__, "runs as uid", os.getuid())'
say "done: $image from $base"
