#!/usr/bin/env bash
# clang-format check and clang-tidy over the release build's compile commands.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/format.sh --check
hack/build.sh release >/dev/null
files=$(git ls-files 'src/*.cc' 'sim/*.cc' | grep -v _test.cc)
clang-tidy-14 -p build/release --quiet $files
