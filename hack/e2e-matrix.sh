#!/usr/bin/env bash
# `make e2e-matrix`: the reduced scenario set (test/e2e/reduced.sh) on every cell of the
# compatibility matrix this machine can run, then the table: one row per cell with its result,
# the date, the commit and the command (docs/compatibility.md keeps the latest).
#
# The cells: the local cluster's Kubernetes, container runtime and layout, with the
# simulated driver of each branch (gpusim root --driver-branch): one cluster, the chart
# installed afresh over each branch's driver root.
#
# Usage: hack/e2e-matrix.sh [--branches r535,r550,r570,r580] [--out FILE]
#   --out  also write the table (markdown) to FILE
# Exits non-zero when any cell failed; every failure names its cell and scenario.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"

branches=r535,r550,r570,r580 out=""
while (($#)); do
  case "$1" in
  --branches) branches=${2:?"--branches needs a list, e.g. r535,r580"} ;;
  --out) out=${2:?"--out needs a file"} ;;
  *) die "unknown argument '$1': accepted are --branches LIST and --out FILE" ;;
  esac
  shift 2
done

hack/deps.sh >/dev/null
hack/build.sh release gpu-device-plugin gpusim nvidia-ml cuda-workload podresources-list kubectl-gpu
hack/k8s-components.sh >/dev/null
export GDP_NODES=1
source test/e2e/lib.sh
source test/e2e/reduced.sh
e2e_check_binaries

passed=0 failed=0 cell_failed=0
pass() {
  passed=$((passed + 1))
  echo "PASS $*"
}
fail() {
  failed=$((failed + 1))
  cell_failed=$((cell_failed + 1))
  echo "FAIL $*"
}

exec 8>/var/tmp/gdp-e2e.lock
flock -w 3600 8 || die "another real-node run (make e2e or make demo) held /var/tmp/gdp-e2e.lock for an hour"

e2e_lay_root
trap 'e2e_teardown >/dev/null' EXIT
e2e_cluster_up
e2e_install_chart 10s
k8s=$(kubectl version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion')
runtime="containerd $("$(k8s_bin_dir)/containerd" --version | awk '{ print $3 }')"
layout="kubeadm (/var/lib/kubelet)"
commit=$(git rev-parse --short HEAD)
rows=()
for branch in ${branches//,/ }; do
  cell="$k8s / $runtime / $layout / $branch"
  cell_failed=0
  t=$SECONDS
  # A fresh driver root for the branch: the plugin must not hold the old one.
  delete_test_pods
  helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
  wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --no-headers 2>/dev/null | grep -q ."
  rm -rf "$GPUROOT"
  if ! err=$("$GPUSIM" root "$GPUROOT" --profile dgx-h100 --driver-branch "$branch" 2>&1); then
    fail "[$cell] gpusim root --driver-branch $branch: $err"
  elif ! err=$(helm install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" 2>&1); then
    fail "[$cell] helm install: $err"
  else
    reduced_set "$cell"
  fi
  result=$([ "$cell_failed" = 0 ] && echo passed || echo "FAILED ($cell_failed)")
  rows+=("| $k8s | $runtime | $layout | $branch | $result | $(date -u +%Y-%m-%d) | $commit | \`make e2e-matrix\` | $((SECONDS - t)) s |")
done

table=$(
  echo "| Kubernetes | runtime | layout | driver branch | reduced set | date | commit | command | took |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
)
echo
echo "$table"
[ -z "$out" ] || echo "$table" >"$out"
echo "$passed passed, $failed failed"
((failed == 0))
