#!/usr/bin/env bash
# Runs a libFuzzer binary for ctest.
#   run_fuzzer.sh corpus <binary> <seed corpus dir> <seconds>
#     fuzzes a temporary copy of the seed corpus (the checked-in one stays as it is);
#     a crash leaves its input in the working directory and fails the test.
#   run_fuzzer.sh regressions <binary> <dir>
#     runs the binary once over every file in <dir> (inputs that once crashed it).
set -euo pipefail
mode="$1" bin="$2" dir="$3"
[ -x "$bin" ] || { echo "fuzz binary $bin not built: run hack/build.sh fuzz" >&2; exit 1; }
case "$mode" in
  corpus)
    seconds="$4"
    work="$(mktemp -d "${TMPDIR:-/tmp}/gdp-fuzz-XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    cp -r "$dir/." "$work/"
    exec_dir="$PWD"
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$exec_dir/$(basename "$bin")-" "$work"
    ;;
  regressions)
    shopt -s nullglob
    inputs=()
    for f in "$dir"/*; do [ -f "$f" ] && inputs+=("$f"); done
    if [ "${#inputs[@]}" -eq 0 ]; then
      echo "no regression inputs in $dir"
      exit 0
    fi
    "$bin" -rss_limit_mb=2048 -timeout=10 "${inputs[@]}"
    ;;
  *) echo "usage: $0 corpus|regressions <binary> <dir> [seconds]" >&2; exit 2 ;;
esac
