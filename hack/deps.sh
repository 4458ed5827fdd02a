#!/usr/bin/env bash
# Installs what the build and tests need: Debian packages and the pinned nvml.h.
# Idempotent: when everything is present it only checks, in about a second.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(
  cmake ninja-build g++ pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libcli11-dev libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14
  python3 python3-pip
  prometheus  # promtool (check metrics/rules) and a real server for the metrics integration test
  patchelf    # gpusim names the simulator library's dependencies for the driver's version
  curl openssl  # the e2e suite reads the plugin's endpoints and makes its TLS certificates
)

install_debian_packages "${packages[@]}"

# nvml.h of every driver branch (NVML_BRANCHES in hack/lib.sh): a CUDA toolkit's copy is not
# used on purpose, so that every build compiles against the same pinned headers.
fetch_nvml_header() { # PACKAGE VERSION SHA256
  local dir tmp whl
  dir=$(nvml_header_dir "$2")
  [ ! -f "$dir/nvml.h" ] || return 0
  log "fetching nvml.h from $1==$2"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 -d "$tmp" "$1==$2"
  whl=$(ls "$tmp"/*.whl)
  echo "$3  $whl" | sha256sum -c --quiet - || { rm -rf "$tmp"; die "$1==$2 wheel checksum mismatch: expected $3"; }
  mkdir -p "$dir"
  python3 - "$whl" "$dir" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith("/include/nvml.h")]
    if not names:
        sys.exit("nvml.h not found in " + whl)
    with z.open(names[0]) as src, open(out + "/nvml.h.tmp", "wb") as dst:
        dst.write(src.read())
PY
  mv "$dir/nvml.h.tmp" "$dir/nvml.h"
  rm -rf "$tmp"
}
for b in "${NVML_BRANCHES[@]}"; do
  read -r _ package version sha <<<"$b"
  fetch_nvml_header "$package" "$version" "$sha"
done
echo "$NVML_INCLUDE_DIR"
