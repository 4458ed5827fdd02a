#!/usr/bin/env bash
# The real-node suite: builds what it needs (the release daemon, simulator and
# tools; the Kubernetes components from Go modules, cached by version), builds and checks
# the release image for amd64 and arm64 and runs the arm64 unit tests under qemu-user
# (GDP_E2E_IMAGE=0 skips that), runs the demo's story (hack/demo.sh --no-wait;
# GDP_E2E_DEMO=0 skips it), then
# test/e2e/run.sh: a local one-node Kubernetes, the chart installed as a
# DaemonSet over a simulated dgx-h100 driver root, and the scenarios of
# docs/e2e.md, then the reduced set on the oldest Kubernetes minor and on CRI-O
# (hack/e2e-matrix.sh). Each ends with "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"
hack/deps.sh >/dev/null
hack/build.sh release gpu-device-plugin gpusim nvidia-ml cuda-workload podresources-list kubectl-gpu
hack/k8s-components.sh >/dev/null
# The oldest minor's components and CRI-O, for the reduced set after the suite, build in the
# background (every go build at nice 19) while the image, the demo and the suite run.
if [ "${GDP_E2E_MATRIX:-1}" = 1 ]; then
  oldest=$(k8s_minors | cut -d' ' -f1)
  matrix_log=$(mktemp)
  GDP_KUBERNETES=$oldest GDP_RUNTIME=crio hack/k8s-components.sh >"$matrix_log" 2>&1 &
  matrix_build=$!
  trap 'kill "$matrix_build" 2>/dev/null || true; rm -f "$matrix_log"' EXIT
fi
# NVIDIA's container toolkit: the cluster's containerd gets its runtime (RuntimeClass nvidia).
GDP_NVIDIA_TOOLKIT_BIN=$(hack/nvidia-toolkit.sh | tail -n 1)
export GDP_NVIDIA_TOOLKIT_BIN
hack/render-static.sh --check
# The release image for linux/amd64 and linux/arm64 (cross-built over Debian's arm64
# libraries), checked layer by layer, each daemon run from its image's own files; the
# Dockerfile builds the same files; the unit tests on arm64 under qemu-user.
if [ "${GDP_E2E_IMAGE:-1}" = 1 ]; then
  make image
  tests/image/check_image.py
  tests/image/dockerfile_test.sh
  make test-arm64
fi
# The demo's story first, checked step by step, with its commands recorded: every command the
# docs attribute to the demo must be among them (hack/doc-commands.py), and every panel of the
# dashboard must be drawn from its Prometheus. It takes and releases the real-node lock itself.
if [ "${GDP_E2E_DEMO:-1}" = 1 ]; then
  demo_out=$(mktemp -d)
  GDP_DEMO_COMMANDS=$demo_out/commands.txt make demo DEMO_FLAGS="--no-wait --plots $demo_out/plots"
  hack/doc-commands.py --demo-transcript "$demo_out/commands.txt"
  rm -rf "$demo_out"
fi
# One real node per machine: a second suite (or `make demo`) waits for this one.
exec 8>/var/tmp/gdp-e2e.lock
flock -w 3600 8 || die "another real-node run (make e2e or make demo) held /var/tmp/gdp-e2e.lock for an hour"
rc=0
test/e2e/run.sh || rc=$?
exec 8>&- # hack/e2e-matrix.sh takes the lock itself
# Both ends of the compatibility matrix and the second runtime, on every change: the reduced
# set (test/e2e/reduced.sh) on the oldest Kubernetes minor and on CRI-O (GDP_E2E_MATRIX=0
# skips it; `make e2e-matrix` runs every cell).
if [ "${GDP_E2E_MATRIX:-1}" = 1 ]; then
  if ! wait "$matrix_build"; then
    cat "$matrix_log" >&2
    die "building Kubernetes $oldest's components or CRI-O failed (its output above)"
  fi
  hack/e2e-matrix.sh --branches "" --layouts "" --kubernetes "$oldest" --runtimes crio || rc=1
fi
exit "$rc"
