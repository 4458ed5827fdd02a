#!/usr/bin/env bash
# Builds the pinned NVIDIA Container Toolkit commands the tests use and prints their bin dir.
#
# nvidia-ctk (cdi generate, runtime configure), nvidia-container-runtime (the OCI runtime
# wrapper containerd runs for RuntimeClass nvidia; its cdi and jit-cdi modes need no
# libnvidia-container) and nvidia-cdi-hook (the hooks a generated CDI spec names) are
# built from the Go module github.com/NVIDIA/nvidia-container-toolkit at the version below,
# through the Go module proxy, into
#   $GDP_CACHE/nvidia-toolkit/<version>/bin/
# The toolkit pins its own dependencies: a throwaway module beside bin/ (mod/) requires
# only the toolkit, so minimal version selection picks exactly the toolkit's go.mod versions.
# The commands need cgo (go-nvml and the toolkit's dxcore, nvsandboxutils and cuda packages
# dlopen their libraries), hence gcc and the libc headers; no C library is linked but libc:
# libnvidia-ml.so.1 and the others are dlopen'ed at run time, as upstream builds them
# (its Makefile's -extldflags). Each binary has a stamp (module version, package, flags,
# Go version) beside it: with every stamp current a run only checks, in well under a second.
#
# Usage: hack/nvidia-toolkit.sh            build what is missing, print the bin dir
#        hack/nvidia-toolkit.sh --times    also print how long each build took
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TOOLKIT_MODULE=github.com/NVIDIA/nvidia-container-toolkit
TOOLKIT_VERSION=v1.20.2
commands=(nvidia-ctk nvidia-container-runtime nvidia-cdi-hook)

dir="$GDP_CACHE/nvidia-toolkit/$TOOLKIT_VERSION"
mod="$dir/mod"
bin="$dir/bin"

show_times=0
[ "${1:-}" = "--times" ] && show_times=1

command -v go >/dev/null || die "go not found: install Go 1.26 or newer (the toolkit's go.mod needs go 1.26.0)"
# Never download a toolchain behind the user's back: a too-old Go fails here with a clear error.
export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=1
go_version=$(go env GOVERSION)
# go-nvml's cgo calls to NVML entry points nvml.h marks deprecated print hundreds of warnings.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"

# Upstream's link flags (its Makefile): strip, the version the commands report, and the
# extldflags that leave the dlopen'ed libraries' symbols unresolved at link time.
ldflags="-s -w -X $TOOLKIT_MODULE/internal/info.version=${TOOLKIT_VERSION#v}"
ldflags+=" '-extldflags=-Wl,--export-dynamic -Wl,--unresolved-symbols=ignore-in-object-files -Wl,-z,lazy'"

stamp_of() { printf '%s' "$TOOLKIT_MODULE/cmd/$1@$TOOLKIT_VERSION ldflags=$ldflags $go_version"; }

all_current=1
for c in "${commands[@]}"; do
  if ! [ -x "$bin/$c" ] || ! [ -f "$bin/.$c.stamp" ] || [ "$(cat "$bin/.$c.stamp")" != "$(stamp_of "$c")" ]; then
    all_current=0
  fi
done
if ((all_current)); then
  echo "$bin"
  exit 0
fi

# cgo needs a C compiler and <dlfcn.h>.
install_debian_packages gcc libc6-dev

# The throwaway module: rebuilt from scratch when the version or Go changes.
mod_stamp="$TOOLKIT_MODULE@$TOOLKIT_VERSION $go_version"
if ! [ -f "$mod/go.sum" ] || ! [ -f "$mod/.stamp" ] || [ "$(cat "$mod/.stamp")" != "$mod_stamp" ]; then
  log "resolving $TOOLKIT_MODULE@$TOOLKIT_VERSION through $(go env GOPROXY)"
  rm -rf "$mod"
  mkdir -p "$mod"
  printf 'module gdp.local/nvidia-toolkit-build\n\ngo 1.26.0\n\nrequire %s %s\n' \
    "$TOOLKIT_MODULE" "$TOOLKIT_VERSION" >"$mod/go.mod"
  pkgs=()
  for c in "${commands[@]}"; do pkgs+=("$TOOLKIT_MODULE/cmd/$c@$TOOLKIT_VERSION"); done
  (cd "$mod" && go get "${pkgs[@]}") ||
    die "go get $TOOLKIT_MODULE@$TOOLKIT_VERSION failed: is the Go module proxy ($(go env GOPROXY)) reachable?"
  printf '%s' "$mod_stamp" >"$mod/.stamp"
fi

mkdir -p "$bin"
for c in "${commands[@]}"; do
  stamp=$(stamp_of "$c")
  if [ -x "$bin/$c" ] && [ -f "$bin/.$c.stamp" ] && [ "$(cat "$bin/.$c.stamp")" = "$stamp" ]; then
    continue
  fi
  log "building $c $TOOLKIT_VERSION (cold on 2 cores: ~30s for the first, seconds for the others)"
  start=$SECONDS
  (cd "$mod" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$bin/.$c.tmp" "$TOOLKIT_MODULE/cmd/$c") ||
    die "go build of $TOOLKIT_MODULE/cmd/$c failed (module $mod); see the compiler output above"
  mv -f "$bin/.$c.tmp" "$bin/$c"
  printf '%s' "$stamp" >"$bin/.$c.stamp"
  took=$((SECONDS - start))
  log "built $c in ${took}s"
  ((show_times)) && printf '%s %ss\n' "$c" "$took" >&2
done

echo "$bin"
