#!/usr/bin/env bash
# Build the local container images the tests use; no registry can be reached from these machines.
# One tiny busybox image (from Debian's busybox-static) is imported and tagged under the common names
# tests and examples use, so `alpine`, `busybox` and `ubuntu:22.04` resolve without a pull.
# Idempotent: an image that already exists is left alone.
set -euo pipefail
base=localhost/busybox:latest
if ! podman image exists "$base"; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/bin "$root"/tmp "$root"/etc "$root"/proc "$root"/sys "$root"/dev "$root"/root "$root"/usr
  cp /bin/busybox "$root"/bin/busybox
  for applet in $("$root"/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  ln -s ../bin "$root"/usr/bin
  ln -s bin "$root"/sbin
  chmod 1777 "$root"/tmp
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root"/etc/passwd
  echo 'root:x:0:' > "$root"/etc/group
  tar -C "$root" -c . | podman import --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/sbin' - "$base" >/dev/null
fi
for name in docker.io/library/alpine:latest docker.io/library/busybox:latest docker.io/library/ubuntu:22.04; do
  podman image exists "$name" || podman tag "$base" "$name"
done
podman run --rm --network none "$base" true
echo "images ready: $base alpine busybox ubuntu:22.04"
