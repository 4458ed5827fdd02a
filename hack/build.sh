#!/usr/bin/env bash
# Configures (once) and builds one preset under build/<preset>.
#   hack/build.sh PRESET [TARGET...]     presets: release, asan, tsan, fuzz
# Extra cmake cache settings can be passed in GDP_CMAKE_ARGS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
preset="${1:-release}"
shift || true
cd "$(repo_root)"
nvml_dir=$(hack/deps.sh)
# Each driver branch's nvml.h, for the simulator's library of that branch.
branch_headers=""
for b in "${NVML_BRANCHES[@]}"; do
  read -r branch _ version _ <<<"$b"
  branch_headers+="${branch_headers:+;}$branch=$(nvml_header_dir "$version")/nvml.h"
done
# NOHASHDIR: debug info may name another checkout's directory; the code is the same.
export CCACHE_BASEDIR="$PWD" CCACHE_DIR="${CCACHE_DIR:-$GDP_CACHE/ccache}" CCACHE_NOHASHDIR=1
# shellcheck disable=SC2086
cmake --preset "$preset" -DNVML_INCLUDE_DIR="$nvml_dir" "-DGDP_NVML_BRANCH_HEADERS=$branch_headers" \
  ${GDP_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "build/$preset" -j"$(nproc)" "${targets[@]}"
