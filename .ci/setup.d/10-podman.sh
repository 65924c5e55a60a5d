#!/usr/bin/env bash
# Install podman with runc and write the containers.conf this machine needs.
# Why (see docs/architecture.md and the runtime research note): the CI VM lacks CAP_SYS_RESOURCE, so
# podman's default ulimits (1048576) cannot be set, and crun refuses hybrid cgroups; runc with
# cgroupfs and ulimits under the hard limits works. Idempotent: skips the install when podman exists.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends \
    podman runc crun conmon containernetworking-plugins fuse-overlayfs slirp4netns passt uidmap catatonit \
    busybox-static debootstrap bubblewrap >/dev/null
fi
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
want='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
  printf '%s\n' "$want" > "$conf"
fi
podman --version
