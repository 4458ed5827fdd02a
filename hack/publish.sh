#!/usr/bin/env bash
# Publishes a release to an OCI registry: the image index of `make image` (both platforms,
# byte for byte: the registry's digest is the layout's), the Helm chart as an OCI artifact,
# a cosign signature on each, and each platform image's SBOM (SPDX, from make image) as a
# signed cosign attestation on that platform's manifest. Prints what a cluster installs,
# by digest.
#
# Usage: hack/publish.sh --registry HOST[:PORT] --key COSIGN_KEY [--ca-file CA]
#                        [--layout DIR] [--chart DIR] [--out FILE]
#   --registry  where to push: the image goes to HOST/gpu-device-plugin, the chart to
#               HOST/charts/gpu-device-plugin, both tagged with the image's version
#   --key       cosign's private key (cosign generate-key-pair; its password in
#               COSIGN_PASSWORD). Signatures are made with the key alone, with no
#               transparency log: verify with `cosign verify --key cosign.pub
#               --insecure-ignore-tlog=true` (docs/release.md)
#   --ca-file   the registry's CA, when the system does not trust it
#   --layout    make image's output (default build/image): gpu-device-plugin.oci/ and
#               sbom-<arch>.spdx.json
#   --chart     the chart (default deployments/helm/gpu-device-plugin), packaged with the
#               image's version as its version and appVersion
#   --out       also write the results as shell assignments (IMAGE_REPOSITORY, IMAGE_DIGEST,
#               CHART_REF, CHART_DIGEST, VERSION) to FILE
# Log in to the registry first where it needs credentials (skopeo login, helm registry
# login; cosign reads the same docker credentials).
# Tools: skopeo (Debian), helm, cosign (hack/release-tools.sh builds it when not on PATH).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$(repo_root)

registry="" key="" ca="" layout_dir=$root/build/image chart=$root/deployments/helm/gpu-device-plugin out=""
while (($#)); do
  case "$1" in
  --registry) registry=${2:?"--registry needs HOST[:PORT]"} ;;
  --key) key=${2:?"--key needs cosign's private key file"} ;;
  --ca-file) ca=${2:?"--ca-file needs a CA file"} ;;
  --layout) layout_dir=${2:?"--layout needs make image's output directory"} ;;
  --chart) chart=${2:?"--chart needs the chart's directory"} ;;
  --out) out=${2:?"--out needs a file"} ;;
  *) die "unknown argument '$1': accepted are --registry, --key, --ca-file, --layout, --chart, --out" ;;
  esac
  shift 2
done
[ -n "$registry" ] || die "--registry HOST[:PORT] is required"
# Paths as given (relative to where it was run), then the repository's tools.
abs() { [ -z "$1" ] || realpath -m "$1"; }
key=$(abs "$key") ca=$(abs "$ca") layout_dir=$(abs "$layout_dir") chart=$(abs "$chart") out=$(abs "$out")
cd "$root"
[ -f "$key" ] || die "--key '$key': cosign's private key file is required (cosign generate-key-pair)"
[ -z "$ca" ] || [ -f "$ca" ] || die "--ca-file '$ca' does not exist"
layout=$layout_dir/gpu-device-plugin.oci
[ -f "$layout/index.json" ] || die "$layout/index.json not found: run make image (or pass --layout)"
[ -f "$chart/Chart.yaml" ] || die "--chart '$chart' has no Chart.yaml"
install_debian_packages skopeo jq
command -v helm >/dev/null || die "helm not found on PATH"
cosign=$(command -v cosign || echo "$(hack/release-tools.sh | tail -n 1)/cosign")

# The layout names one index; its version is the tag.
read -r index_digest version < <(jq -r '.manifests[0] | "\(.digest) \(.annotations["org.opencontainers.image.ref.name"])"' "$layout/index.json")
[ "$version" != null ] || die "$layout/index.json names no version (org.opencontainers.image.ref.name)"
image_repo=$registry/gpu-device-plugin

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tls=() skopeo_tls=()
if [ -n "$ca" ]; then
  mkdir "$work/certs"
  cp "$ca" "$work/certs/ca.crt"
  tls=(--ca-file "$ca")
  skopeo_tls=(--dest-cert-dir "$work/certs")
  export SSL_CERT_FILE=$ca # cosign's trust
fi

# The image index and both platform images, as they are in the layout.
skopeo copy -q --all "${skopeo_tls[@]}" --digestfile "$work/digest" \
  "oci:$layout:$version" "docker://$image_repo:$version"
pushed=$(cat "$work/digest")
[ "$pushed" = "$index_digest" ] || die "the registry holds the index as $pushed, the layout as $index_digest"
log "image $image_repo@$index_digest ($version)"

# The chart, versioned as the image.
helm package "$chart" --version "$version" --app-version "$version" -d "$work" >/dev/null
chart_digest=$(helm push "$work/gpu-device-plugin-$version.tgz" "oci://$registry/charts" "${tls[@]}" 2>&1 |
  tee "$work/push.log" | sed -n 's/^Digest: //p')
[ -n "$chart_digest" ] || die "helm push failed: $(cat "$work/push.log")"
log "chart oci://$registry/charts/gpu-device-plugin@$chart_digest ($version)"

sign() {
  "$cosign" sign --key "$key" --use-signing-config=false --tlog-upload=false --yes "$1" >"$work/cosign.log" 2>&1 ||
    die "cosign sign $1 failed: $(tail -n 3 "$work/cosign.log")"
}
sign "$image_repo@$index_digest"
sign "$registry/charts/gpu-device-plugin@$chart_digest"
# Each platform's SBOM, on its own manifest (what a node pulls).
index_blob=$layout/blobs/sha256/${index_digest#sha256:}
while read -r digest arch; do
  sbom=$layout_dir/sbom-$arch.spdx.json
  [ -f "$sbom" ] || die "$sbom not found: make image writes one per platform"
  "$cosign" attest --key "$key" --use-signing-config=false --tlog-upload=false --yes --type spdxjson \
    --predicate "$sbom" "$image_repo@$digest" >"$work/cosign.log" 2>&1 ||
    die "cosign attest $image_repo@$digest ($arch) failed: $(tail -n 3 "$work/cosign.log")"
  log "SBOM of linux/$arch attested on $image_repo@$digest"
done < <(jq -r '.manifests[] | "\(.digest) \(.platform.architecture)"' "$index_blob")

echo "image $image_repo@$index_digest"
echo "chart oci://$registry/charts/gpu-device-plugin@$chart_digest"
if [ -n "$out" ]; then
  printf 'VERSION=%s\nIMAGE_REPOSITORY=%s\nIMAGE_DIGEST=%s\nCHART_REF=%s\nCHART_DIGEST=%s\n' "$version" \
    "$image_repo" "$index_digest" "oci://$registry/charts/gpu-device-plugin@$chart_digest" "$chart_digest" >"$out"
fi
