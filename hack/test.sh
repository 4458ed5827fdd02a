#!/usr/bin/env bash
# Builds with sanitizers and runs every unit, integration and (bounded) fuzz test.
#   hack/test.sh          AddressSanitizer + UBSan (what `make test` and CI run)
#   hack/test.sh tsan     ThreadSanitizer
set -euo pipefail
source "$(dirname "$0")/lib.sh"
preset="${1:-asan}"
cd "$(repo_root)"
if [ "$preset" = asan ]; then
  # libFuzzer targets need clang: build just them, then run them from ctest
  # (bounded time) next to the other tests.
  hack/build.sh fuzz fuzz_all
  export GDP_CMAKE_ARGS="-DGDP_FUZZ_BIN_DIR=$PWD/build/fuzz/fuzz"
fi
hack/build.sh "$preset"
# NVIDIA's container toolkit, for the test that compares our CDI spec with nvidia-ctk's.
GDP_NVIDIA_TOOLKIT_BIN=$(hack/nvidia-toolkit.sh | tail -n 1)
export GDP_NVIDIA_TOOLKIT_BIN
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Debian's gRPC and Abseil are not built with TSan: hack/tsan.supp says what is
# suppressed and why (races whose top frame is our code are still reported).
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$PWD/hack/tsan.supp"
cd "build/$preset"
ctest --output-on-failure -j"$(nproc)" --timeout 300
