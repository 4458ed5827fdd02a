#!/usr/bin/env bash
# `make image`: the plugin's OCI image for linux/amd64 and linux/arm64, as one multi-arch
# index. Each image is the daemon (gpu-device-plugin, with its nvidia-device-plugin and
# config-manager names for NVIDIA's chart) and the shared libraries it needs, nothing else,
# labelled with its version, revision and source. amd64 is the release build; arm64 is
# cross-built with Debian's cross toolchain over the arm64 libraries of hack/sysroot.sh.
# No image builder, daemon or registry is needed (hack/oci.sh writes the layout).
#
# Usage: hack/image.sh [--platforms amd64,arm64] [--out DIR] [--version V]
#   --version  the image's version label and tag (default: the chart's appVersion)
# Writes, under DIR (default build/image):
#   rootfs/<arch>/                      each image's root filesystem (deployments/container/
#                                       Dockerfile builds the same image FROM scratch over it)
#   gpu-device-plugin.oci/              the OCI image layout: index.json names the index
#   gpu-device-plugin-<version>.tar     the same layout as one archive
#   sbom-<arch>.spdx.json               each image's SBOM (SPDX 2.3, hack/sbom.py)
# Prints, last, "<name>:<version> <index digest> <archive>".
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/oci.sh"
root=$(repo_root)
cd "$root"

platforms=amd64,arm64
out=build/image
version=""
while (($#)); do
  case "$1" in
  --platforms) platforms=${2:?"--platforms needs a list, e.g. amd64,arm64"}; shift ;;
  --out) out=${2:?"--out needs a directory"}; shift ;;
  --version) version=${2:?"--version needs a version"}; shift ;;
  *) die "unknown argument '$1': accepted are --platforms LIST, --out DIR and --version V" ;;
  esac
  shift
done
for a in ${platforms//,/ }; do
  case "$a" in amd64 | arm64) ;; *) die "platform '$a' is not one of amd64, arm64" ;; esac
done

name=gpu-device-plugin
[ -n "$version" ] || version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deployments/helm/gpu-device-plugin/Chart.yaml)
[ -n "$version" ] || die "no appVersion in deployments/helm/gpu-device-plugin/Chart.yaml"
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, so that the same commit gives the same image.
created=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
# Where the source is: GDP_IMAGE_SOURCE, else the repository's origin when it has one.
source_url=${GDP_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || echo "$root")}
labels=$(printf '{"org.opencontainers.image.title":"%s","org.opencontainers.image.description":"%s","org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.source":"%s","org.opencontainers.image.created":"%s"}' \
  "$name" "Kubernetes device plugin for NVIDIA GPUs" "$version" "$revision" "$source_url" "$created")

# The arm64 libraries (hack/sysroot.sh), once, when arm64 is built.
sysroot=""
[[ ",$platforms," != *,arm64,* ]] || sysroot=$(hack/sysroot.sh | tail -n 1)

# build ARCH: the daemon for ARCH; prints its path.
build() {
  case "$1" in
  amd64)
    hack/build.sh release gpu-device-plugin >&2
    echo build/release/src/daemon/gpu-device-plugin
    ;;
  arm64)
    GDP_SYSROOT=$sysroot hack/build.sh arm64 gpu-device-plugin >&2
    echo build/arm64/src/daemon/gpu-device-plugin
    ;;
  esac
}

layout="$out/$name.oci"
rm -rf "$layout"
mkdir -p "$layout"
entries=""
for arch in ${platforms//,/ }; do
  bin=$(build "$arch")
  log "$arch: laying out the root filesystem"
  oci_plugin_rootfs "$out/rootfs/$arch" "$bin" "$arch"
  config=$(printf '{"Env":["PATH=/usr/bin:/bin"],"Entrypoint":["/usr/bin/gpu-device-plugin"],"WorkingDir":"/","Labels":%s}' "$labels")
  read -r digest size < <(oci_image "$layout" "$out/rootfs/$arch" "$arch" "$config" 1)
  entries+="${entries:+,}$(oci_manifest_entry "$digest" "$size" "$arch" "{}")"
  log "$arch: $digest ($(du -sh "$out/rootfs/$arch" | cut -f1) unpacked)"
  # The SBOM: the libraries' packages from the archive's root, the statically linked ones
  # from the -dev packages the build used (the host's for amd64, the sysroot's for arm64).
  roots=(--root "$(hack/image-libs.sh "$arch" | tail -n 1)")
  [ "$arch" = amd64 ] || roots+=(--root "$sysroot")
  hack/sbom.py --arch "$arch" --sources "$out/rootfs/$arch.sources" --version "$version" \
    --revision "$revision" --created "$created" "${roots[@]}" --out "$out/sbom-$arch.spdx.json" >&2
done
# The index, as its own blob (what a registry serves for the tag), and index.json naming it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s],"annotations":%s}' \
  "$entries" "$labels" >"$work/index.json"
read -r index_digest index_size < <(oci_blob "$layout" "$work/index.json")
oci_layout_finish "$layout" "$(printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$index_digest" "$index_size" "$version")"
archive="$out/$name-$version.tar"
oci_archive "$layout" "$archive"
echo "$name:$version $index_digest $archive"
