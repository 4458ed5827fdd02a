#!/usr/bin/env bash
# Formats every C++ file with the project's .clang-format (--check: only report).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.cc' '*.h')
if [ "${1:-}" = --check ]; then
  clang-format-14 --dry-run -Werror $files
else
  clang-format-14 -i $files
fi
