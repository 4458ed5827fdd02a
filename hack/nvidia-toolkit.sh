#!/usr/bin/env bash
# Builds the pinned NVIDIA Container Toolkit commands the tests use and prints their bin dir.
#
# nvidia-ctk (cdi generate, runtime configure), nvidia-container-runtime (the OCI runtime
# wrapper containerd runs for RuntimeClass nvidia; its cdi and jit-cdi modes need no
# libnvidia-container) and nvidia-cdi-hook (the hooks a generated CDI spec names) are
# built from the Go module github.com/NVIDIA/nvidia-container-toolkit at the version below,
# through the Go module proxy, into
#   $GDP_CACHE/nvidia-toolkit/<version>/bin/
# by go_module_build (hack/lib.sh: the toolkit's own dependency versions, cgo, a stamp per
# binary so a second run only checks). The commands need cgo (go-nvml and the toolkit's
# dxcore, nvsandboxutils and cuda packages dlopen their libraries); no C library is linked
# but libc: libnvidia-ml.so.1 and the others are dlopen'ed at run time, as upstream builds
# them (its Makefile's -extldflags).
#
# Usage: hack/nvidia-toolkit.sh            build what is missing, print the bin dir
#        hack/nvidia-toolkit.sh --times    also print how long each build took
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TOOLKIT_MODULE=github.com/NVIDIA/nvidia-container-toolkit
TOOLKIT_VERSION=v1.20.2
commands=(nvidia-ctk nvidia-container-runtime nvidia-cdi-hook)

dir="$GDP_CACHE/nvidia-toolkit/$TOOLKIT_VERSION"
[ "${1:-}" = "--times" ] && export GO_BUILD_TIMES=1

# Upstream's link flags (its Makefile): strip, the version the commands report, and the
# extldflags that leave the dlopen'ed libraries' symbols unresolved at link time.
ldflags="-s -w -X $TOOLKIT_MODULE/internal/info.version=${TOOLKIT_VERSION#v}"
ldflags+=" '-extldflags=-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files -Wl,-z,lazy'"

go_module_build "$TOOLKIT_MODULE" "$TOOLKIT_VERSION" 1.26.0 "$dir" "$ldflags" "${commands[@]}"
echo "$dir/bin"
