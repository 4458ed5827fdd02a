#!/usr/bin/env bash
# Builds NVIDIA's own device plugin daemon, nvidia-device-plugin, and prints its bin dir.
#
# The benchmarks compare our plugin's idle CPU with NVIDIA's on a simulated node; this is
# not run by CI. The daemon is built from the Go module github.com/NVIDIA/k8s-device-plugin
# (package ./cmd/nvidia-device-plugin) at the version below, through the Go module proxy, into
#   $GDP_CACHE/nvidia-device-plugin/<version>/bin/
# v0.19.1 is the newest release the module proxy serves here (no v0.20.x is served; its
# version list, stale, names only v0.17.4, but v0.18.x and v0.19.x resolve).
# The plugin pins its own dependencies: a throwaway module beside bin/ (mod/) requires
# only the plugin, so minimal version selection picks exactly the plugin's go.mod versions.
# The daemon needs cgo (go-nvml dlopens libnvidia-ml.so.1), hence gcc and the libc headers;
# no C library is linked but libc: NVML is dlopen'ed at run time, as upstream builds it
# (its Makefile's -extldflags). The binary has a stamp (module version, package, flags,
# Go version) beside it: with the stamp current a run only checks, in well under a second.
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
mod="$dir/mod"
bin="$dir/bin"

show_times=0
[ "${1:-}" = "--times" ] && show_times=1

command -v go >/dev/null || die "go not found: install Go 1.25 or newer (the plugin's go.mod needs go 1.25.0)"
# Never download a toolchain behind the user's back: a too-old Go fails here with a clear error.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=1
go_version=$(go env GOVERSION)
# go-nvml's cgo calls to NVML entry points nvml.h marks deprecated print hundreds of warnings.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"

# Upstream's link flags (its Makefile): strip, the version and commit the daemon reports,
# and the extldflags that leave the dlopen'ed library's symbols unresolved at link time.
ldflags="-s -w -X $PLUGIN_MODULE/internal/info.version=$PLUGIN_VERSION"
ldflags+=" -X $PLUGIN_MODULE/internal/info.gitCommit=$PLUGIN_COMMIT"
ldflags+=" '-extldflags=-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files -Wl,-z,lazy'"

stamp="$PLUGIN_MODULE/cmd/$command@$PLUGIN_VERSION ldflags=$ldflags $go_version"
if [ -x "$bin/$command" ] && [ -f "$bin/.$command.stamp" ] && [ "$(cat "$bin/.$command.stamp")" = "$stamp" ]; then
  echo "$bin"
  exit 0
fi

# cgo needs a C compiler and <dlfcn.h>.
install_debian_packages gcc libc6-dev

# The throwaway module: rebuilt from scratch when the version or Go changes.
mod_stamp="$PLUGIN_MODULE@$PLUGIN_VERSION $go_version"
if ! [ -f "$mod/go.sum" ] || ! [ -f "$mod/.stamp" ] || [ "$(cat "$mod/.stamp")" != "$mod_stamp" ]; then
  log "resolving $PLUGIN_MODULE@$PLUGIN_VERSION through $(go env GOPROXY)"
  rm -rf "$mod"
  mkdir -p "$mod"
  printf 'module gdp.local/nvidia-device-plugin-build\n\ngo 1.25.0\n\nrequire %s %s\n' \
    "$PLUGIN_MODULE" "$PLUGIN_VERSION" >"$mod/go.mod"
  (cd "$mod" && go get "$PLUGIN_MODULE/cmd/$command@$PLUGIN_VERSION") ||
    die "go get $PLUGIN_MODULE@$PLUGIN_VERSION failed: is the Go module proxy ($(go env GOPROXY)) reachable?"
  printf '%s' "$mod_stamp" >"$mod/.stamp"
fi

mkdir -p "$bin"
log "building $command $PLUGIN_VERSION (cold on 2 cores: ~45s)"
start=$SECONDS
(cd "$mod" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$bin/.$command.tmp" "$PLUGIN_MODULE/cmd/$command") ||
  die "go build of $PLUGIN_MODULE/cmd/$command failed (module $mod); see the compiler output above"
mv -f "$bin/.$command.tmp" "$bin/$command"
printf '%s' "$stamp" >"$bin/.$command.stamp"
took=$((SECONDS - start))
log "built $command in ${took}s"
((show_times)) && printf '%s %ss\n' "$command" "$took" >&2

echo "$bin"
