#!/usr/bin/env bash
# Builds the container images of the real-node tests as OCI image tarballs, without a
# registry or an image builder: each image is one uncompressed layer (a deterministic
# tar of a root filesystem) plus its OCI config, manifest and index (hack/oci.sh), and
# optionally imports them into containerd's k8s.io namespace, where the kubelet finds
# them (pods use imagePullPolicy: Never).
#
# Usage: hack/images.sh [-a CONTAINERD_SOCKET] [NAME...]
#   NAME      one of the images defined below (default: pause busybox; a dash in
#             NAME maps to an underscore in its function: gpu-device-plugin)
#   -a SOCK   also import each image with `ctr -n k8s.io images import` (unpacked
#             into $CONTAINERD_SNAPSHOTTER, default overlayfs, as ctr reads it)
# Prints one line per image: NAME REFERENCE TARBALL.
#
# Images land in $GDP_CACHE/images/NAME.tar as localhost/gdp/NAME:e2e.
# To add an image, define a function image_NAME that fills the root filesystem
# directory given as $1 and sets IMG_ENTRYPOINT and IMG_CMD (JSON arrays) and,
# if needed, IMG_ENV (JSON array of "K=V"); then `hack/images.sh NAME`. Example:
#   image_hello() {
#     install -D /usr/bin/hello "$1/usr/bin/hello"
#     oci_copy_libs "$1" "$OCI_NATIVE_LIBDIR" "$OCI_NATIVE_SEARCH" /usr/bin/hello   # its libraries and the loader
#     IMG_ENTRYPOINT='["/usr/bin/hello"]'
#   }
# image_gpu_device_plugin below is the real one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/oci.sh"

root=$(repo_root)
out="$GDP_CACHE/images"
tag=e2e
socket=""
if [ "${1:-}" = "-a" ]; then
  socket=${2:?"-a needs the containerd socket path"}
  shift 2
fi
names=("$@")
((${#names[@]})) || names=(pause busybox)

# pause: the sandbox image containerd's CRI starts for every pod (see local-cluster.sh).
image_pause() {
  local src="$root/test/e2e/images/pause/pause.c"
  command -v gcc >/dev/null || die "gcc not found: run hack/deps.sh"
  mkdir -p "$1"
  gcc -static -Os -s -Wall -Wextra -Werror -o "$1/pause" "$src" ||
    die "building the static pause binary from $src failed (needs libc6-dev)"
  IMG_ENTRYPOINT='["/pause"]'
}

# busybox: the small test workload, Debian's busybox-static with one link per applet.
image_busybox() {
  local bb=/bin/busybox
  [ -x "$bb" ] && "$bb" --list >/dev/null 2>&1 || die "$bb not found: run hack/k8s-components.sh (installs busybox-static)"
  file -L "$bb" 2>/dev/null | grep -q 'dynamically linked' && die "$bb is dynamically linked: install busybox-static"
  oci_base_files "$1"
  mkdir -p "$1/bin"
  install -m 0755 "$bb" "$1/bin/busybox"
  local applet
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$1/bin/$applet"
  done
  IMG_ENTRYPOINT='null'
  IMG_CMD='["/bin/sh"]'
}

# gpu-workload: what a GPU pod of the tests runs: busybox, glibc (the loader, libc, libm),
# which the driver's user space needs, and the C++ runtime (libstdc++, libgcc_s), which
# the simulator's libnvidia-ml needs besides (the real one does not); no driver file: a
# container gets those from the CDI spec or the NVIDIA runtime, never the image.
image_gpu_workload() {
  image_busybox "$1"
  oci_copy_libs "$1" "$OCI_NATIVE_LIBDIR" "$OCI_NATIVE_SEARCH" /usr/bin/env
  local lib
  for lib in /lib/x86_64-linux-gnu/libm.so.6 /lib/x86_64-linux-gnu/libdl.so.2 \
    /lib/x86_64-linux-gnu/libstdc++.so.6 /lib/x86_64-linux-gnu/libgcc_s.so.1; do
    [ -e "$lib" ] || die "$lib not found: the gpu-workload image needs it"
    install -D -m 0755 "$(readlink -f "$lib")" "$1$lib"
  done
  # A small CUDA program (sim/cuda_workload.cc); libcuda.so.1 comes with the driver.
  local workload=${GDP_CUDA_WORKLOAD:-$root/build/release/sim/cuda-workload}
  [ -x "$workload" ] || die "$workload not found: run hack/build.sh release cuda-workload"
  install -D -m 0755 "$workload" "$1/usr/bin/cuda-workload"
  IMG_ENTRYPOINT='null'
  IMG_CMD='["/bin/sh"]'
}

# gpu-device-plugin: the daemon from the release build (hack/build.sh release
# gpu-device-plugin), laid out as make image lays out its amd64 image (oci_plugin_rootfs). It
# finds libnvidia-ml.so.1 under the driver root mounted at runtime, never in the image.
# GDP_PLUGIN_BINARY overrides the binary's path.
image_gpu_device_plugin() {
  local bin=${GDP_PLUGIN_BINARY:-$root/build/release/src/daemon/gpu-device-plugin}
  [ -x "$bin" ] || die "$bin not found: run hack/build.sh release gpu-device-plugin"
  oci_plugin_rootfs "$1" "$bin" amd64
  IMG_ENTRYPOINT='["/usr/bin/gpu-device-plugin"]'
  IMG_CMD='null'
}

build_image() {
  local name=$1 fn="image_${1//-/_}"  # gpu-device-plugin: image_gpu_device_plugin
  declare -F "$fn" >/dev/null || die "no image named '$name': define $fn in $0"
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  IMG_ENTRYPOINT='null' IMG_CMD='null' IMG_ENV='["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]'
  "$fn" "$work/rootfs"

  # One uncompressed layer (containerd unpacks it without decompressing).
  local layout="$work/layout" manifest_digest manifest_size
  read -r manifest_digest manifest_size < <(oci_image "$layout" "$work/rootfs" amd64 \
    "$(printf '{"Env":%s,"Entrypoint":%s,"Cmd":%s,"WorkingDir":"/"}' "$IMG_ENV" "$IMG_ENTRYPOINT" "$IMG_CMD")" 0)
  local ref="localhost/gdp/$name:$tag"
  oci_layout_finish "$layout" "$(printf '{"schemaVersion":2,"manifests":[%s]}' "$(oci_manifest_entry \
    "$manifest_digest" "$manifest_size" amd64 \
    "$(printf '{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}' "$ref" "$tag")")")"

  mkdir -p "$out"
  oci_archive "$layout" "$out/$name.tar"

  if [ -n "$socket" ]; then
    local ctr
    ctr=$(command -v ctr || true)
    [ -n "$ctr" ] || ctr="$("$root/hack/k8s-components.sh")/ctr"
    local err
    if ! err=$("$ctr" --address "$socket" -n k8s.io images import "$out/$name.tar" 2>&1 >/dev/null); then
      printf '%s\n' "$err" >&2
      die "importing $out/$name.tar into containerd at $socket failed (ctr's output above)"
    fi
  fi
  echo "$name $ref $out/$name.tar"
}

for n in "${names[@]}"; do build_image "$n"; done
