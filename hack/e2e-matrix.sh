#!/usr/bin/env bash
# `make e2e-matrix`: the reduced scenario set (test/e2e/reduced.sh) on every cell of the
# compatibility matrix this machine can run, then the table: one row per cell with its result,
# the date, the commit and the command (docs/compatibility.md keeps the latest).
#
# The cells, each on the newest Kubernetes with containerd 2 and the kubeadm layout unless it
# says otherwise:
#   - the simulated driver of each branch (gpusim root --driver-branch): one cluster, the
#     chart installed afresh over each branch's driver root;
#   - each distribution's layout (k3s, RKE2, MicroK8s: their kubelet root dir and containerd
#     config path, hack/local-cluster.sh GDP_KUBELET_ROOT and GDP_CONTAINERD_CONFIG) with the
#     newest branch: a cluster each, the chart with its `distribution` preset, and the
#     doctor's runtime check reading the distribution's containerd config;
#   - each older Kubernetes minor (GDP_KUBERNETES), with the newest branch: a cluster each;
#   - each other container runtime (GDP_RUNTIME: containerd 1.7, CRI-O), with the newest
#     branch: a cluster each.
# Components are built on first use and cached (hack/k8s-components.sh).
#
# Usage: hack/e2e-matrix.sh [--branches r535,r550,r570,r580] [--layouts k3s,rke2,microk8s]
#                           [--kubernetes 1.33,1.34,1.35,1.36] [--runtimes containerd-1.7,crio]
#                           [--out FILE]
#   each list may be empty ("") to leave those cells out
#   --out  also write the table (markdown) to FILE
# Exits non-zero when any cell failed; every failure names its cell and scenario.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"

branches=r535,r550,r570,r580 layouts=k3s,rke2,microk8s out=""
minors=$(k8s_minors | tr ' ' '\n' | grep -vx "$(k8s_default_minor)" | paste -sd,)
runtimes=containerd-1.7,crio
while (($#)); do
  case "$1" in
  --branches) branches=${2?"--branches needs a list, e.g. r535,r580 (or empty)"} ;;
  --layouts) layouts=${2?"--layouts needs a list, e.g. k3s (or empty)"} ;;
  --kubernetes) minors=${2?"--kubernetes needs a list of minors, e.g. 1.33 (or empty)"} ;;
  --runtimes) runtimes=${2?"--runtimes needs a list, e.g. crio (or empty)"} ;;
  --out) out=${2:?"--out needs a file"} ;;
  *) die "unknown argument '$1': accepted are --branches, --layouts, --kubernetes and --runtimes (each a LIST) and --out FILE" ;;
  esac
  shift 2
done
for m in ${minors//,/ }; do (GDP_KUBERNETES=$m k8s_module_dir >/dev/null) || exit 1; done
for r in ${runtimes//,/ }; do (GDP_RUNTIME=$r runtime_name >/dev/null) || exit 1; done

# The cells run without NVIDIA's container runtime (make e2e exports it for its own suite).
unset GDP_NVIDIA_TOOLKIT_BIN
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

trap 'e2e_teardown >/dev/null' EXIT
commit=$(git rev-parse --short HEAD)
rows=()
# versions: $k8s and $runtime of the cluster that runs.
versions() {
  k8s=$(kubectl version -o json 2>/dev/null | jq -r '.serverVersion.gitVersion')
  runtime=$(crictl version 2>/dev/null | awk '$1 == "RuntimeName:" { n = $2 } $1 == "RuntimeVersion:" { v = $2 } END { print n, v }')
}
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

kubeadm="kubeadm (/var/lib/kubelet)"
if [ -n "$branches" ]; then
  e2e_lay_root
  e2e_cluster_up
  e2e_install_chart 10s
  versions
  for branch in ${branches//,/ }; do
    cell="$k8s / $runtime / $kubeadm / $branch"
    cell_failed=0
    t=$SECONDS
    if relay "$branch"; then reduced_set "$cell"; fi
    row "$kubeadm" "$branch" $((SECONDS - t))
  done
  left=$(e2e_teardown)
  [ -z "$left" ] || fail "[$k8s / $runtime / kubeadm] teardown left:$left"
fi

newest=r580
# doctor_check ROW WHAT: the doctor (run by the plugin at start) has ROW OK, read from the
# runtime config the chart mounted under /host/containerd/.
doctor_check() {
  doctor_row() { kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep "check=\"$1\"" | head -1; }
  has_doctor_row() { doctor_row "$1" | grep . >/dev/null; }
  wait_until 30 has_doctor_row "$1" || true
  local line
  line=$(doctor_row "$1" || true)
  if grep 'status=OK' <<<"$line" | grep '/host/containerd/' >/dev/null; then
    pass "[$cell] doctor: $2 reads, CDI enabled"
  else
    fail "[$cell] doctor's $1 row: expected OK on /host/containerd/..., saw: ${line:-nothing}"
  fi
}
# The distribution's containerd config, mounted by the chart's preset.
layout_doctor() { doctor_check "containerd cdi" "the containerd config of the $dist preset"; }
crio_doctor() { doctor_check "crio cdi" "CRI-O's config (containerdConfig)"; }

# own_cluster LAYOUT: a cell with a cluster of its own (brought up with the GDP_* settings
# exported) and the newest branch: the reduced set (and the function $cell_extra names), then
# the teardown, then its row.
own_cluster() {
  local layout=$1
  cell_failed=0
  t=$SECONDS
  e2e_lay_root
  local errf
  errf=$(mktemp)
  if ! e2e_cluster_up 2>"$errf"; then
    k8s="Kubernetes ${GDP_KUBERNETES:-$(k8s_default_minor)}" runtime=${GDP_RUNTIME:-containerd}
    cell="$k8s / $runtime / $layout / $newest"
    fail "[$cell] the cluster did not come up: $(tail -n 5 "$errf" | tr '\n' ' ')"
  else
    versions
    cell="$k8s / $runtime / $layout / $newest"
    values=$(mktemp)
    e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet 10s 9101 >"$values"
    if relay "$newest"; then
      reduced_set "$cell"
      "${cell_extra:-true}"
    fi
  fi
  rm -f "$errf"
  local left
  left=$(e2e_teardown)
  [ -z "$left" ] || fail "[$cell] teardown left:$left"
  row "$layout" "$newest" $((SECONDS - t))
}

for m in ${minors//,/ }; do
  GDP_KUBERNETES=$m own_cluster "$kubeadm"
done
for r in ${runtimes//,/ }; do
  if [ "$r" = crio ]; then
    # The doctor reads CRI-O's config (and its drop-ins) where the chart mounts it.
    E2E_EXTRA_VALUES="containerdConfig: $STATE/crio/etc/crio.conf" cell_extra=crio_doctor GDP_RUNTIME=$r own_cluster "$kubeadm"
  else
    GDP_RUNTIME=$r own_cluster "$kubeadm"
  fi
done

# Each distribution's layout: its own cluster, with the newest branch.
for dist in ${layouts//,/ }; do
  case "$dist" in
  k3s) conf=/var/lib/rancher/k3s/agent/etc/containerd/config.toml kroot=/var/lib/kubelet ;;
  rke2) conf=/var/lib/rancher/rke2/agent/etc/containerd/config.toml kroot=/var/lib/kubelet ;;
  microk8s) conf=/var/snap/microk8s/current/args/containerd.toml kroot=/var/snap/microk8s/common/var/lib/kubelet ;;
  *) die "--layouts: '$dist' is not one of k3s, rke2, microk8s" ;;
  esac
  export GDP_KUBELET_ROOT=$kroot GDP_CONTAINERD_CONFIG=$conf E2E_DISTRIBUTION=$dist
  cell_extra=layout_doctor own_cluster "$dist ($kroot, $conf)"
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
