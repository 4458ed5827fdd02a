#!/usr/bin/env bash
# Builds NVIDIA's own device plugin daemon, nvidia-device-plugin, and prints its bin dir.
#
# The benchmarks compare our plugin's idle CPU with NVIDIA's on a simulated node; this is
# not run by CI. The daemon is built from the Go module github.com/NVIDIA/k8s-device-plugin
# (package ./cmd/nvidia-device-plugin) at the version below, through the Go module proxy, into
#   $GDP_CACHE/nvidia-device-plugin/<version>/bin/
# v0.19.1 is the newest release the module proxy serves here (no v0.20.x is served; its
# version list, stale, names only v0.17.4, but v0.18.x and v0.19.x resolve).
# go_module_build (hack/lib.sh) builds it with the plugin's own dependency versions and cgo
# (go-nvml dlopens libnvidia-ml.so.1 at run time, as upstream builds it), and stamps it so
# a second run only checks.
#
# Usage: hack/nvidia-device-plugin.sh            build it if missing, print the bin dir
#        hack/nvidia-device-plugin.sh --times    also print how long the build took
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PLUGIN_MODULE=github.com/NVIDIA/k8s-device-plugin
PLUGIN_VERSION=v0.19.1
# The tag's commit, as the module proxy's .info reports it; the binary prints it in --version.
PLUGIN_COMMIT=b24f243ba9183df5727f38e758d968c7e6f91014
command=nvidia-device-plugin

dir="$GDP_CACHE/nvidia-device-plugin/$PLUGIN_VERSION"
[ "${1:-}" = "--times" ] && export GO_BUILD_TIMES=1

# Upstream's link flags (its Makefile): strip, the version and commit the daemon reports,
# and the extldflags that leave the dlopen'ed library's symbols unresolved at link time.
ldflags="-s -w -X $PLUGIN_MODULE/internal/info.version=$PLUGIN_VERSION"
ldflags+=" -X $PLUGIN_MODULE/internal/info.gitCommit=$PLUGIN_COMMIT"
ldflags+=" '-extldflags=-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files -Wl,-z,lazy'"

go_module_build "$PLUGIN_MODULE" "$PLUGIN_VERSION" 1.25.0 "$dir" "$ldflags" "$command"
echo "$dir/bin"
