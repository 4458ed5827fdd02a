#!/usr/bin/env bash
# Builds the pinned release tools the tests use and prints their bin dir: the CNCF
# distribution registry (`registry`, an OCI registry on 127.0.0.1) and sigstore's `cosign`
# (signing the image and the chart, attaching the SBOM, verifying), from their Go modules
# through the Go module proxy, into $GDP_CACHE/release-tools/bin (go_module_build in
# hack/lib.sh: each module's own dependency versions, a stamp per binary so a second run
# only checks).
#
# Usage: hack/release-tools.sh            build what is missing, print the bin dir
#        hack/release-tools.sh --times    also print how long each build took
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REGISTRY_MODULE=github.com/distribution/distribution/v3
REGISTRY_VERSION=v3.1.2
COSIGN_MODULE=github.com/sigstore/cosign/v3
COSIGN_VERSION=v3.1.3

[ "${1:-}" = "--times" ] && export GO_BUILD_TIMES=1
go_module_build "$REGISTRY_MODULE" "$REGISTRY_VERSION" 1.26.0 "$GDP_CACHE/release-tools/registry-$REGISTRY_VERSION" \
  "-s -w -X $REGISTRY_MODULE/version.version=$REGISTRY_VERSION" registry
go_module_build "$COSIGN_MODULE" "$COSIGN_VERSION" 1.26.0 "$GDP_CACHE/release-tools/cosign-$COSIGN_VERSION" \
  "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION" cosign
mkdir -p "$GDP_CACHE/release-tools/bin"
ln -sfn "$GDP_CACHE/release-tools/registry-$REGISTRY_VERSION/bin/registry" "$GDP_CACHE/release-tools/bin/registry"
ln -sfn "$GDP_CACHE/release-tools/cosign-$COSIGN_VERSION/bin/cosign" "$GDP_CACHE/release-tools/bin/cosign"
echo "$GDP_CACHE/release-tools/bin"
