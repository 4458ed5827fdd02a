#!/usr/bin/env bash
# `make e2e-matrix`: the reduced scenario set (test/e2e/reduced.sh) on every cell of the
# compatibility matrix this machine can run, then the table: one row per cell with its result,
# the date, the commit and the command (docs/compatibility.md keeps the latest).
#
# The cells: the local cluster's Kubernetes and container runtime, with
#   - the simulated driver of each branch (gpusim root --driver-branch) on the kubeadm
#     layout: one cluster, the chart installed afresh over each branch's driver root;
#   - each distribution's layout (k3s, RKE2, MicroK8s: their kubelet root dir and containerd
#     config path, hack/local-cluster.sh GDP_KUBELET_ROOT and GDP_CONTAINERD_CONFIG) with the
#     newest branch: a cluster each, the chart with its `distribution` preset, and the
#     doctor's runtime check reading the distribution's containerd config.
#
# Usage: hack/e2e-matrix.sh [--branches r535,r550,r570,r580] [--layouts k3s,rke2,microk8s]
#                           [--out FILE]
#   --out  also write the table (markdown) to FILE
# Exits non-zero when any cell failed; every failure names its cell and scenario.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"

branches=r535,r550,r570,r580 layouts=k3s,rke2,microk8s out=""
while (($#)); do
  case "$1" in
  --branches) branches=${2:?"--branches needs a list, e.g. r535,r580"} ;;
  --layouts) layouts=${2?"--layouts needs a list, e.g. k3s (or empty)"} ;;
  --out) out=${2:?"--out needs a file"} ;;
  *) die "unknown argument '$1': accepted are --branches LIST, --layouts LIST and --out FILE" ;;
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
commit=$(git rev-parse --short HEAD)
rows=()
# row LAYOUT BRANCH SECONDS: the table's row for the cell just run.
row() {
  local result
  result=$([ "$cell_failed" = 0 ] && echo passed || echo "FAILED ($cell_failed)")
  rows+=("| $k8s | $runtime | $1 | $2 | $result | $(date -u +%Y-%m-%d) | $commit | \`make e2e-matrix\` | $3 s |")
}
# relay BRANCH: the chart installed afresh over a fresh driver root of that branch.
relay() {
  delete_test_pods
  helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
  wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --no-headers 2>/dev/null | grep -q ."
  rm -rf "$GPUROOT"
  if ! err=$("$GPUSIM" root "$GPUROOT" --profile dgx-h100 --driver-branch "$1" 2>&1); then
    fail "[$cell] gpusim root --driver-branch $1: $err"
    return 1
  fi
  if ! err=$(helm install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" 2>&1); then
    fail "[$cell] helm install: $err"
    return 1
  fi
}

layout="kubeadm (/var/lib/kubelet)"
for branch in ${branches//,/ }; do
  cell="$k8s / $runtime / $layout / $branch"
  cell_failed=0
  t=$SECONDS
  if relay "$branch"; then reduced_set "$cell"; fi
  row "$layout" "$branch" $((SECONDS - t))
done

# Each distribution's layout: its own cluster, with the newest branch.
newest=r580
[ -z "$layouts" ] || {
  left=$(e2e_teardown)
  [ -z "$left" ] || fail "[$k8s / $runtime / kubeadm] teardown left:$left"
}
for dist in ${layouts//,/ }; do
  case "$dist" in
  k3s) conf=/var/lib/rancher/k3s/agent/etc/containerd/config.toml kroot=/var/lib/kubelet ;;
  rke2) conf=/var/lib/rancher/rke2/agent/etc/containerd/config.toml kroot=/var/lib/kubelet ;;
  microk8s) conf=/var/snap/microk8s/current/args/containerd.toml kroot=/var/snap/microk8s/common/var/lib/kubelet ;;
  *) die "--layouts: '$dist' is not one of k3s, rke2, microk8s" ;;
  esac
  layout="$dist ($kroot, $conf)"
  cell="$k8s / $runtime / $layout / $newest"
  cell_failed=0
  t=$SECONDS
  export GDP_KUBELET_ROOT=$kroot GDP_CONTAINERD_CONFIG=$conf E2E_DISTRIBUTION=$dist
  e2e_lay_root
  e2e_cluster_up
  # The release's values with the distribution's preset; relay installs it.
  values=$(mktemp)
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet 10s 9101 >"$values"
  if relay "$newest"; then
    reduced_set "$cell"
    # The doctor (run by the plugin at start) read the distribution's containerd config,
    # mounted by the chart's preset.
    doctor_row() { kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep 'check="containerd cdi"' | head -1; }
    has_doctor_row() { doctor_row | grep . >/dev/null; }
    wait_until 30 has_doctor_row || true
    line=$(doctor_row)
    if grep 'status=OK' <<<"$line" | grep '/host/containerd/' >/dev/null; then
      pass "[$cell] doctor: the containerd config of the $dist preset reads, CDI enabled"
    else
      fail "[$cell] doctor's containerd cdi row: expected OK on /host/containerd/..., saw: ${line:-nothing}"
    fi
  fi
  # Torn down with the layout's settings, and nothing of it left.
  left=$(e2e_teardown)
  [ -z "$left" ] || fail "[$cell] teardown left:$left"
  row "$layout" "$newest" $((SECONDS - t))
  unset GDP_KUBELET_ROOT GDP_CONTAINERD_CONFIG E2E_DISTRIBUTION
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
