#!/usr/bin/env bash
# Configures and builds one preset (release, asan, tsan, fuzz) under build/<preset>.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
preset="${1:-release}"
shift || true
cd "$(repo_root)"
hack/deps.sh >/dev/null
nvml_dir=$(hack/deps.sh)
export CCACHE_BASEDIR="$PWD" CCACHE_DIR="${CCACHE_DIR:-$GDP_CACHE/ccache}"
if [ ! -f "build/$preset/build.ninja" ]; then
  cmake --preset "$preset" -DNVML_INCLUDE_DIR="$nvml_dir" "$@" >/dev/null
fi
cmake --build "build/$preset" -j"$(nproc)"
