#!/usr/bin/env bash
# The shared libraries of the plugin's image, from Debian's archive at the versions it has
# now (with its security updates), whatever this machine has installed: the runtime packages
# the daemon needs (OCI_RUNTIME_PACKAGES in hack/oci.sh) and their dependencies, for one
# architecture, downloaded and unpacked (never installed). make image and the test images
# copy the daemon's libraries from here only. Cached in $GDP_CACHE/image-libs/ARCH, keyed by
# the packages and their versions: with apt's lists unchanged this only checks.
#
# Usage: hack/image-libs.sh amd64|arm64   (apt-get update first to take newer updates)
# Prints the root's path last; its .files says which package brought each file.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/oci.sh"

arch=${1:-}
case "$arch" in amd64 | arm64) ;; *) die "usage: hack/image-libs.sh amd64|arm64 (saw '${1:-}')" ;; esac
if [ "$arch" = arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  hack_dir=$(dirname "$0")
  "$hack_dir/sysroot.sh" >/dev/null # adds the arm64 architecture to apt
fi

root="$GDP_CACHE/image-libs/$arch"
debian_root "$arch" "$root" "layout 1" '^$' "${OCI_RUNTIME_PACKAGES[@]}"
echo "$root"
