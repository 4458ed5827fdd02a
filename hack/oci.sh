# Writes OCI image layouts (https://github.com/opencontainers/image-spec) with tar, gzip and
# sha256sum alone: no image builder, no daemon, no registry. Source it after hack/lib.sh.
# Every output is deterministic for the same inputs (sorted tar, owner 0, mtime 0, gzip -n).
# shellcheck shell=bash

# oci_blob LAYOUT FILE: moves FILE into LAYOUT/blobs/sha256 under its digest; prints
# "sha256:<hex> <size>".
oci_blob() {
  local d s
  d=$(sha256sum "$2" | cut -d' ' -f1)
  s=$(stat -c %s "$2")
  mkdir -p "$1/blobs/sha256"
  mv -f "$2" "$1/blobs/sha256/$d"
  echo "sha256:$d $s"
}

# oci_tar ROOTFS OUT: a deterministic tar of ROOTFS.
oci_tar() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$1" -cf "$2" .
}

# oci_image LAYOUT ROOTFS ARCH CONFIG GZIP: one image of ROOTFS for linux/ARCH in LAYOUT: its
# layer (gzip-compressed when GZIP is 1), config and manifest blobs. CONFIG is the JSON
# object of the image config's "config" (Env, Entrypoint, Cmd, Labels, ...). Prints the
# manifest's "sha256:<hex> <size>".
oci_image() {
  local layout=$1 rootfs=$2 arch=$3 config=$4 gz=$5 work
  work=$(mktemp -d)
  oci_tar "$rootfs" "$work/layer.tar"
  local diff_id layer_type=application/vnd.oci.image.layer.v1.tar
  diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
  if [ "$gz" = 1 ]; then
    gzip -n -9 "$work/layer.tar"
    mv "$work/layer.tar.gz" "$work/layer.tar"
    layer_type=application/vnd.oci.image.layer.v1.tar+gzip
  fi
  local layer_digest layer_size config_digest config_size
  read -r layer_digest layer_size < <(oci_blob "$layout" "$work/layer.tar")
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$arch" "$config" "$diff_id" >"$work/config.json"
  read -r config_digest config_size < <(oci_blob "$layout" "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"%s","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_type" "$layer_digest" "$layer_size" >"$work/manifest.json"
  oci_blob "$layout" "$work/manifest.json"
  rm -rf "$work"
}

# oci_manifest_entry DIGEST SIZE ARCH ANNOTATIONS: one entry of an index's "manifests";
# ANNOTATIONS is a JSON object ({} for none).
oci_manifest_entry() {
  printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":%s}' \
    "$1" "$2" "$3" "$4"
}

# oci_layout_finish LAYOUT INDEX_JSON: writes LAYOUT's index.json and oci-layout.
oci_layout_finish() {
  printf '%s' "$2" >"$1/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# oci_archive LAYOUT OUT: the layout as one tarball (what `ctr images import` and
# `skopeo copy oci-archive:` read).
oci_archive() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$1" -cf "$2.tmp" .
  mv -f "$2.tmp" "$2"
}

# oci_copy_libs ROOTFS LIBDIR SEARCH_DIRS BINARY...: copies the shared libraries BINARY
# needs, recursively (readelf's NEEDED, found in the colon-separated SEARCH_DIRS, the first
# match), into ROOTFS/LIBDIR (/lib/<multiarch triple>, where glibc's loader looks without an
# ld.so.cache), and the program interpreter (PT_INTERP) at its path. Works for any
# architecture readelf reads, so for cross-built binaries too.
oci_copy_libs() {
  local rootfs=$1 libdir=$2 dirs=$3 f lib found interp
  shift 3
  local -a queue=("$@") seen=()
  while ((${#queue[@]})); do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    interp=$(readelf -lW "$f" 2>/dev/null | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
    if [ -n "$interp" ] && [ ! -e "$rootfs$interp" ]; then
      found=$(oci_find "$(basename "$interp")" "$dirs") || die "the interpreter $interp of $f is in none of $dirs"
      install -D -m 0755 "$(readlink -f "$found")" "$rootfs$interp"
      [ -z "${OCI_SOURCES:-}" ] || printf '%s\t%s\n' "$interp" "$found" >>"$OCI_SOURCES"
    fi
    for lib in $(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [[ " ${seen[*]} " == *" $lib "* ]] && continue
      seen+=("$lib")
      found=$(oci_find "$lib" "$dirs") || die "$lib (needed by $f) is in none of $dirs${OCI_MISSING_HINT:+: $OCI_MISSING_HINT}"
      install -D -m 0755 "$(readlink -f "$found")" "$rootfs$libdir/$lib"
      # Where each file came from, for the SBOM (hack/sbom.py).
      [ -z "${OCI_SOURCES:-}" ] || printf '%s\t%s\n' "$libdir/$lib" "$found" >>"$OCI_SOURCES"
      queue+=("$found")
    done
  done
}

# oci_find NAME DIRS: the first DIRS/NAME that exists (DIRS colon-separated); 1 when none.
oci_find() {
  local d
  for d in ${2//:/ }; do
    if [ -e "$d/$1" ]; then
      echo "$d/$1"
      return 0
    fi
  done
  return 1
}

# This machine's (amd64) library directory and where oci_copy_libs finds its libraries.
OCI_NATIVE_LIBDIR=/lib/x86_64-linux-gnu
OCI_NATIVE_SEARCH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu

# The Debian packages the daemon's shared libraries come from: hack/image-libs.sh takes them
# and their dependencies from the archive for the plugin's image. Add one when the daemon
# links a new shared library.
OCI_RUNTIME_PACKAGES=(libc6 libgcc-s1 libstdc++6 libssl3 libspdlog1.10 libfmt9 zlib1g)

# oci_base_files ROOTFS: the directories and /etc files every image has (root and nobody).
oci_base_files() {
  mkdir -p "$1"/{etc,tmp,proc,sys,dev,run,var,root}
  chmod 1777 "$1/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

# oci_plugin_rootfs ROOTFS BINARY ARCH: the plugin's image for ARCH (amd64, arm64): the
# daemon, its nvidia-device-plugin and config-manager names (NVIDIA's chart runs those
# commands: under them the daemon takes NVIDIA's defaults where nothing else sets them), the
# shared libraries it needs (oci_copy_libs) from Debian's archive (hack/image-libs.sh), debug
# info stripped. ROOTFS.sources says where each library came from (hack/sbom.py reads it).
# hack/image.sh (the release) and hack/images.sh (the tests) use it, so the tests run the
# release's files.
oci_plugin_rootfs() {
  local dir=$1 bin=$2 arch=$3 triple strip libs f
  case "$arch" in
  amd64) triple=x86_64-linux-gnu strip=strip ;;
  arm64) triple=aarch64-linux-gnu strip=aarch64-linux-gnu-strip ;;
  *) die "oci_plugin_rootfs: architecture '$arch' is not one of amd64, arm64" ;;
  esac
  command -v "$strip" >/dev/null || die "$strip not found: install binutils (or the cross toolchain)"
  libs=$("$(dirname "${BASH_SOURCE[0]}")/image-libs.sh" "$arch" | tail -n 1)
  rm -rf "$dir" "$dir.sources"
  oci_base_files "$dir"
  install -D -m 0755 "$bin" "$dir/usr/bin/gpu-device-plugin"
  ln -sf gpu-device-plugin "$dir/usr/bin/nvidia-device-plugin"
  ln -sf gpu-device-plugin "$dir/usr/bin/config-manager"
  OCI_SOURCES="$dir.sources" OCI_MISSING_HINT="add its Debian package to OCI_RUNTIME_PACKAGES in hack/oci.sh" \
    oci_copy_libs "$dir" "/lib/$triple" "$libs/usr/lib/$triple" "$bin"
  while IFS= read -r -d '' f; do
    chmod u+w "$f"
    "$strip" --strip-debug "$f"
  done < <(find "$dir/usr/bin" "$dir/lib" "$dir/lib64" -type f -print0 2>/dev/null)
}
