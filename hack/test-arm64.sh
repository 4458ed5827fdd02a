#!/usr/bin/env bash
# The unit tests, cross-built for linux/arm64 (cmake/aarch64-linux-gnu.cmake over the sysroot
# of hack/sysroot.sh) and run under qemu-user: each test program once, all its cases in one
# process (qemu starts slowly; ctest would start one per case). The integration tests, which
# start daemons and clusters, run on amd64 only.
#
# Usage: hack/test-arm64.sh [TEST_PROGRAM...]   (default: every unit test program)
# Prints one line per program and, last, "N programs passed, M failed"; exits 1 on a failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"

# Cases that start another of our programs as a child process: qemu-user runs the test
# program, but the arm64 child it execs needs binfmt_misc, which this machine does not
# register. They run natively on amd64 in make test.
exclude='KubectlGpuBinaryTest.*'

programs=("$@")
if ((${#programs[@]} == 0)); then
  programs=(common_test config_test nvml_test driver_test resources_test plugin_test health_test
    metrics_test labels_test cdi_test podresources_test kube_test mps_test doctor_test daemon_test
    kubectl_gpu_test)
fi
sysroot=$(hack/sysroot.sh | tail -n 1)
GDP_SYSROOT=$sysroot hack/build.sh arm64 "${programs[@]}" >/dev/null

passed=0
failed=0
for p in "${programs[@]}"; do
  bin=$(find build/arm64 -name "$p" -type f -perm -u+x | head -n 1)
  if [ -z "$bin" ]; then
    echo "FAIL $p: not built under build/arm64"
    failed=$((failed + 1))
    continue
  fi
  file "$bin" | grep -q 'ARM aarch64' || die "$bin is not an arm64 program: $(file -b "$bin")"
  log=$(mktemp)
  start=$SECONDS
  # The test programs find their data relative to the source tree, as under ctest.
  if (cd "$(dirname "$bin")" && qemu-aarch64 -L /usr/aarch64-linux-gnu \
    -E "LD_LIBRARY_PATH=$sysroot/usr/lib/aarch64-linux-gnu:$sysroot/usr/lib" \
    "$PWD/$(basename "$bin")" --gtest_brief=1 "--gtest_filter=-$exclude") >"$log" 2>&1; then
    echo "PASS $p: $(sed -n 's/^\[  PASSED  \] \(.*\)\.$/\1/p' "$log" | tail -1) in $((SECONDS - start))s"
    passed=$((passed + 1))
  else
    echo "FAIL $p (arm64, qemu-aarch64):"
    grep -E '^\[  FAILED  \]|Failure|error' "$log" | head -20 | sed 's/^/  /'
    failed=$((failed + 1))
  fi
  rm -f "$log"
done
echo "$passed programs passed, $failed failed (linux/arm64 under qemu-user)"
((failed == 0))
