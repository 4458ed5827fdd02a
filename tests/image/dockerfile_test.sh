#!/usr/bin/env bash
# deployments/container/Dockerfile builds, with buildah (Debian's; nothing is pulled: it is
# FROM scratch), the same files as `make image` for each platform: the image's root
# filesystem equals build/image/rootfs/<arch> (diff -r, links as links), and its config
# names the platform and the entrypoint. Run after `make image`, as root.
#
# Usage: tests/image/dockerfile_test.sh [ROOTFS_DIR]   (default build/image/rootfs)
set -euo pipefail
source "$(dirname "$0")/../../hack/lib.sh"
cd "$(repo_root)"
rootfs=${1:-build/image/rootfs}
install_debian_packages buildah
export STORAGE_DRIVER=vfs
b=(buildah --storage-driver vfs)
failed=0
for arch in amd64 arm64; do
  [ -d "$rootfs/$arch" ] || die "$rootfs/$arch not found: run make image"
  tag=localhost/gdp-dockerfile-test:$arch
  if ! out=$("${b[@]}" build -q --platform "linux/$arch" --build-arg VERSION=test \
    -f deployments/container/Dockerfile -t "$tag" "$rootfs" 2>&1); then
    echo "FAIL $arch: buildah build: $out"
    failed=1
    continue
  fi
  ctr=$("${b[@]}" from -q --arch "$arch" "$tag")
  mnt=$("${b[@]}" mount "$ctr")
  if d=$(diff -r --no-dereference "$rootfs/$arch" "$mnt" 2>&1); then
    echo "PASS $arch: the Dockerfile's image has exactly the files of make image's"
  else
    echo "FAIL $arch: the Dockerfile's image differs from $rootfs/$arch: $(head -5 <<<"$d")"
    failed=1
  fi
  got=$("${b[@]}" inspect --type image --format '{{.OCIv1.Architecture}} {{.OCIv1.Config.Entrypoint}}' "$tag")
  if [ "$got" = "$arch [/usr/bin/gpu-device-plugin]" ]; then
    echo "PASS $arch: config $got"
  else
    echo "FAIL $arch: expected config '$arch [/usr/bin/gpu-device-plugin]', saw '$got'"
    failed=1
  fi
  "${b[@]}" umount "$ctr" >/dev/null
  "${b[@]}" rm "$ctr" >/dev/null
  "${b[@]}" rmi -f "$tag" >/dev/null
done
exit "$failed"
