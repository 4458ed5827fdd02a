#!/usr/bin/env bash
# Smoke test of the local real-node cluster (hack/local-cluster.sh): brings it up,
# waits for the node to be Ready, runs a hostNetwork busybox pod to completion from
# the locally imported image, checks its logs, tears down, and checks that nothing
# is left behind (processes, mounts, cgroups, bridge, state dirs).
#
# Usage: test/e2e/smoke.sh        (as root; builds the components on first use)
# Keeps the cluster for inspection on failure when GDP_KEEP=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/hack/lib.sh"

S="${GDP_CLUSTER_DIR:-/var/tmp/gdp-cluster}"
KROOT="${GDP_KUBELET_ROOT:-/var/lib/kubelet}"
NODE="${GDP_NODE_NAME:-gpu-node-0}"
export GDP_CLUSTER_DIR="$S" GDP_KUBELET_ROOT="$KROOT" GDP_NODE_NAME="$NODE"

passed=0 failed=0
pass() { log "PASS: $*"; passed=$((passed + 1)); }
fail() { log "FAIL: $*"; failed=$((failed + 1)); }

teardown() {
  if ((failed)) && [ "${GDP_KEEP:-0}" = 1 ]; then
    log "GDP_KEEP=1: leaving the cluster up; hack/local-cluster.sh down removes it"
    return
  fi
  "$root/hack/local-cluster.sh" down || fail "hack/local-cluster.sh down exited non-zero"
}

finish() {
  local rc=$?
  trap - EXIT
  ((rc == 0)) || failed=$((failed + 1))
  teardown
  echo "smoke: $passed passed, $failed failed"
  ((failed == 0))
}
trap finish EXIT

start=$SECONDS
kubeconfig=$("$root/hack/local-cluster.sh" up)
ready=$((SECONDS - start))
pass "node $NODE Ready ${ready}s after hack/local-cluster.sh up"
export KUBECONFIG="$kubeconfig"
export PATH="$(k8s_bin_dir):$PATH"

kubectl version >/dev/null || fail "kubectl version against the local API server failed"

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  hostNetwork: true
  restartPolicy: Never
  nodeName: $NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: localhost/gdp/busybox:e2e
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo smoke-ok uid=\$(id -u) node=\$(hostname); test -e /dev/null"]
EOF

# The pod is scheduled by the scheduler only if nodeName is unset; it is set above so
# this checks the kubelet and runtime; a second pod below goes through the scheduler.
if kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/smoke --timeout=90s >/dev/null; then
  pass "hostNetwork busybox pod ran to completion"
else
  fail "pod smoke did not succeed within 90s; expected phase Succeeded, saw $(kubectl get pod smoke -o jsonpath='{.status.phase}' 2>&1)"
  kubectl describe pod smoke >&2 || true
fi

out=$(kubectl logs smoke 2>&1 || true)
if grep -q "^smoke-ok uid=0 node=" <<<"$out"; then
  pass "pod logs read through the API server: $out"
else
  fail "pod logs: expected a line starting 'smoke-ok uid=0 node=', saw: $out"
fi

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: smoke-scheduled
  namespace: default
spec:
  hostNetwork: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: localhost/gdp/busybox:e2e
    imagePullPolicy: Never
    command: ["/bin/true"]
EOF
if kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/smoke-scheduled --timeout=90s >/dev/null; then
  pass "pod placed by kube-scheduler ran on $(kubectl get pod smoke-scheduled -o jsonpath='{.spec.nodeName}')"
else
  fail "pod smoke-scheduled did not succeed within 90s; saw phase $(kubectl get pod smoke-scheduled -o jsonpath='{.status.phase}' 2>&1)"
  kubectl describe pod smoke-scheduled >&2 || true
fi

# Tear down now and check that it left nothing behind.
trap - EXIT
teardown
leftover=""
[ ! -e "$S" ] || leftover+=" state dir $S;"
[ ! -e "$KROOT" ] || leftover+=" kubelet root $KROOT;"
m=$(awk -v s="$S" -v k="$KROOT" 'index($2, s) == 1 || index($2, k) == 1 { print $2 }' /proc/self/mounts)
[ -z "$m" ] || leftover+=" mounts: $m;"
c=$(find /sys/fs/cgroup -maxdepth 2 -name kubepods 2>/dev/null)
[ -z "$c" ] || leftover+=" cgroups: $c;"
! ip link show gdp-cni0 >/dev/null 2>&1 || leftover+=" bridge gdp-cni0;"
for p in /proc/[0-9]*; do
  if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF -- "$S/"; then
    leftover+=" process $(basename "$p"): $({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | cut -c1-80);"
  fi
done
if [ -z "$leftover" ]; then
  pass "teardown left no processes, mounts, cgroups, bridge or state"
else
  fail "teardown left:$leftover"
fi
echo "smoke: $passed passed, $failed failed"
((failed == 0))
