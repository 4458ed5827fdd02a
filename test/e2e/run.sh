#!/usr/bin/env bash
# The end-to-end scenarios against a real kubelet: brings the local
# cluster up (hack/local-cluster.sh), lays a simulated dgx-h100 driver root on the
# host with gpusim, imports the images, installs the chart as a DaemonSet with that
# driver root, runs each scenario as a shell test and tears everything down (trap).
#
# Usage: test/e2e/run.sh            (as root; components built by hack/k8s-components.sh,
#                                    binaries by hack/build.sh release gpu-device-plugin gpusim
#                                    nvidia-ml podresources-list kubectl-gpu)
# (grep reads all of a pipe here, never -q: with pipefail an early exit fails the writer.)
# Env:   GDP_BUILD_DIR   where the release build is (default build/release)
#        GDP_GPU_ROOT    the simulated driver root (default /var/tmp/gdp-gpuroot)
#        GDP_E2E_KEEP=1  leave the cluster up at the end (for debugging)
#        GDP_NODES       1 or 2 (default 2): the second node (4x Tesla T4) runs scenario 10
# Prints one line per check (PASS/FAIL with "expected X, saw Y") and, last, exactly
# "N passed, M failed". Exits 1 when anything failed.
set -euo pipefail
source "$(dirname "$0")/../../hack/lib.sh"
export GDP_NODES=${GDP_NODES:-2}
root=$(repo_root)
cd "$root"
source test/e2e/lib.sh

passed=0
failed=0

e2e_check_binaries

pass() {
  passed=$((passed + 1))
  echo "PASS $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL $*"
}
# check NAME EXPECTED SEEN
check() {
  if [ "$2" = "$3" ]; then pass "$1: $3"; else fail "$1: expected $2, saw $3"; fi
}

teardown() {
  local rc=$?
  if [ "${GDP_E2E_KEEP:-0}" = 1 ]; then
    echo "GDP_E2E_KEEP=1: cluster left up; hack/local-cluster.sh down and rm -rf $GPUROOT to clean up" >&2
    rm -f "${values:-}"
  else
    local left
    left=$(e2e_teardown)
    if [ -z "$left" ]; then pass "teardown left nothing behind"; else fail "teardown: expected nothing left, saw$left"; fi
  fi
  echo "$passed passed, $failed failed"
  if ((failed > 0 || rc != 0)); then exit 1; fi
}

# The chart against NVIDIA's chart values (no cluster needed).
source test/e2e/chart.sh

# The cluster, the driver root, the images.
t_start=$SECONDS
e2e_lay_root
trap teardown EXIT
e2e_cluster_up
echo "cluster up in $((SECONDS - t_start))s"

# --- install the chart ---------------------------------------------------------------
t_ds=$SECONDS
# Short health timings so scenario 6 takes seconds.
e2e_install_chart 10s

# 1. capacity and allocatable 8 within 30 s of the DaemonSet starting.
if wait_until 30 gpus_are 8; then
  pass "1 capacity and allocatable nvidia.com/gpu = 8 after $((SECONDS - t_ds))s"
else
  fail "1 capacity/allocatable: expected 8/8 within 30s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" logs -l app.kubernetes.io/name=gpu-device-plugin --tail 20 || true
  exit 1
fi

# C7: a plugin with no NVIDIA runtime on its node runs privileged, as the docs say to set it:
# the API server refuses privileged beside the chart's allowPrivilegeEscalation: false, and
# takes the two together (server-side dry runs of the rendered DaemonSet).
c7_apply() { helm template "$RELEASE" "$CHART" --namespace "$NS" --show-only templates/daemonset.yaml "$@" |
  kc apply --dry-run=server -f - 2>&1; }
c7_alone=$(c7_apply --set securityContext.privileged=true || true)
c7_both=$(c7_apply --set securityContext.privileged=true --set securityContext.allowPrivilegeEscalation=true || true)
case "$c7_alone" in
*allowPrivilegeEscalation*) pass "C7 privileged alone is refused: $(grep -o 'cannot set .*' <<<"$c7_alone" | head -1 | cut -c1-120)" ;;
*) fail "C7 privileged alone: expected the API server to refuse it, saw: $c7_alone" ;;
esac
case "$c7_both" in
*"(server dry run)"*) pass "C7 privileged with allowPrivilegeEscalation: true is accepted" ;;
*) fail "C7 privileged with allowPrivilegeEscalation: expected a server dry run to accept it, saw: $c7_both" ;;
esac

# 10. node labels and events; with two nodes also scheduling by label, the cluster's
# capacity and a GPU failure that touches only its own node.
labels_are() { # NODE KEY=VALUE...
  local n=$1 kv
  shift
  for kv in "$@"; do [ "$(node_label "$n" "${kv%%=*}")" = "${kv#*=}" ] || return 1; done
}
want0=(nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3 nvidia.com/gpu.count=8 nvidia.com/gpu.family=hopper
  nvidia.com/gpu.memory=81559 nvidia.com/gpu.unhealthy-count=0 nvidia.com/gpu.sharing-strategy=none
  nvidia.com/mig.strategy=none)
if wait_until 30 labels_are "$NODE" "${want0[@]}"; then
  pass "10 $NODE labels: ${want0[*]}"
else
  fail "10 $NODE labels: expected ${want0[*]}, saw $(kc get node "$NODE" -o jsonpath='{.metadata.labels}')"
  kc -n "$NS" logs "$(plugin_pod)" --tail 10 2>&1 | sed 's/^/  plugin: /' || true
fi
# Only the labeller's own keys are managed by it: the kubelet's stay.
check "10 $NODE keeps the kubelet's kubernetes.io/hostname label" "$NODE" "$(node_label "$NODE" kubernetes.io/hostname)"
if [ "$E2E_NODES" = 2 ]; then
  if wait_until 30 gpus_are 4 "$NODE1"; then
    pass "10 $NODE1 capacity and allocatable nvidia.com/gpu = 4"
  else
    fail "10 $NODE1 capacity/allocatable: expected 4/4, saw $(node_gpus capacity "$NODE1")/$(node_gpus allocatable "$NODE1")"
  fi
  want1=(nvidia.com/gpu.product=Tesla-T4 nvidia.com/gpu.count=4 nvidia.com/gpu.family=turing
    nvidia.com/gpu.memory=15360 nvidia.com/gpu.compute.major=7 nvidia.com/gpu.compute.minor=5
    nvidia.com/gpu.unhealthy-count=0 nvidia.com/mig.capable=false)
  if wait_until 30 labels_are "$NODE1" "${want1[@]}"; then
    pass "10 $NODE1 labels: ${want1[*]}"
  else
    fail "10 $NODE1 labels: expected ${want1[*]}, saw $(kc get node "$NODE1" -o jsonpath='{.metadata.labels}')"
  fi
  total=$(kc get nodes -o jsonpath='{range .items[*]}{.status.capacity.nvidia\.com/gpu}{"\n"}{end}' | awk '{ s += $1 } END { print s + 0 }')
  check "10 cluster nvidia.com/gpu capacity (8 + 4)" 12 "$total"
  gpu_pod t4 1 nvidia.com/gpu "{nvidia.com/gpu.product: Tesla-T4}"
  if wait_until 60 pod_logged t4 READY; then
    check "10 pod with nodeSelector gpu.product=Tesla-T4 runs on" "$NODE1" "$(kc -n "$TNS" get pod t4 -o jsonpath='{.spec.nodeName}')"
  else
    fail "10 Tesla-T4 pod: expected Running on $NODE1, saw phase $(pod_phase t4) on '$(kc -n "$TNS" get pod t4 -o jsonpath='{.spec.nodeName}')'"
  fi
  # A GPU failure on the T4 node: its allocatable and labels change, the H100 node's do not.
  t=$SECONDS
  gpusim1 xid --gpu 2 --xid 79 >/dev/null
  if wait_until 10 alloc_is 3 "$NODE1"; then
    pass "10 $NODE1 allocatable 3 $((SECONDS - t))s after XID 79 on its GPU 2"
  else
    fail "10 after XID 79 on $NODE1 GPU 2: expected allocatable 3 within 10s, saw $(node_gpus allocatable "$NODE1")"
  fi
  if wait_until 15 labels_are "$NODE1" nvidia.com/gpu.unhealthy-count=1; then
    pass "10 $NODE1 label gpu.unhealthy-count=1 after the XID"
  else
    fail "10 $NODE1 gpu.unhealthy-count: expected 1, saw '$(node_label "$NODE1" nvidia.com/gpu.unhealthy-count)'"
  fi
  check "10 $NODE allocatable untouched by $NODE1's failure" 8 "$(node_gpus allocatable "$NODE")"
  check "10 $NODE gpu.unhealthy-count untouched" 0 "$(node_label "$NODE" nvidia.com/gpu.unhealthy-count)"
  xid_event() { events_of "$NODE1" GpuXid | grep 'XID 79' >/dev/null; }
  if wait_until 15 xid_event; then
    pass "10 node event on $NODE1: $(events_of "$NODE1" GpuXid | head -1)"
  else
    fail "10 node event: expected a GpuXid event naming XID 79 on $NODE1, saw: $(kc -n default get events --field-selector involvedObject.kind=Node -o jsonpath='{range .items[*]}{.involvedObject.name}/{.reason}: {.message}{"\n"}{end}' | tail -5 | tr '\n' ';')"
  fi
  check "10 GpuXid events on $NODE (none)" "" "$(events_of "$NODE" GpuXid)"
  if kc describe node "$NODE1" | grep GpuXid >/dev/null; then
    pass "10 kubectl describe node $NODE1 shows the GpuXid event"
  else
    fail "10 kubectl describe node $NODE1: expected the GpuXid event in its Events"
  fi
  # XID 79 calls for a reset (NVML's recovery action): the GPU stays out until it has one.
  gpusim1 reset --gpu 2 >/dev/null || fail "10 gpusim reset --gpu 2 on $NODE1 failed"
  t=$SECONDS
  if wait_until 60 alloc_is 4 "$NODE1" && wait_until 15 labels_are "$NODE1" nvidia.com/gpu.unhealthy-count=0; then
    pass "10 $NODE1 allocatable 4 and gpu.unhealthy-count=0 again $((SECONDS - t))s after recovery"
  else
    fail "10 $NODE1 after recovery: expected allocatable 4 and unhealthy-count 0, saw $(node_gpus allocatable "$NODE1") and '$(node_label "$NODE1" nvidia.com/gpu.unhealthy-count)'"
  fi
  recovered_event() { events_of "$NODE1" GpuRecovered | grep . >/dev/null; }
  wait_until 15 recovered_event && pass "10 GpuRecovered event on $NODE1" ||
    fail "10 expected a GpuRecovered event on $NODE1"
  kc -n "$TNS" delete pod t4 --wait=true >/dev/null
fi

# 2. one GPU: exactly its UUID, its node ENXIO, the others absent or EPERM.
gpu_pod one 1
if wait_until 60 pod_logged one READY; then
  nvd=$(pod_nvd one)
  check "2 NVIDIA_VISIBLE_DEVICES names one GPU" 1 "$(tr ',' '\n' <<<"$nvd" | grep -c .)"
  logs=$(kc -n "$TNS" logs one || true)
  own=$(grep -E '^dev[0-7]: .*No such device or address' <<<"$logs" | sed 's/^dev\([0-7]\):.*/\1/' | tr '\n' ' ' | sed 's/ $//' || true)
  check "2 exactly one /dev/nvidiaN opens with ENXIO" 1 "$(wc -w <<<"$own")"
  if [ -n "$own" ]; then
    check "2 the ENXIO node is the GPU named by NVIDIA_VISIBLE_DEVICES" "$(uuid_of "${own%% *}")" "$nvd"
  fi
  others=$(grep -E '^dev[0-7]: ' <<<"$logs" | grep -vE 'No such device or address|absent|Operation not permitted' || true)
  check "2 every other GPU node absent or EPERM" "" "$others"
  pr=$("$PODRESOURCES" 2>&1 | awk -v p="$TNS/one/c" '$1 == p && $2 == "nvidia.com/gpu" { print $3 }' || true)
  check "2 pod-resources API lists the pod's device" "$nvd" "$pr"
else
  fail "2 1-GPU pod: expected Running with its report, saw phase $(pod_phase one)"
fi

# 3. no GPU request: no /dev/nvidia* node at all.
gpu_pod none 0
if wait_until 60 pod_logged none READY; then
  check "3 /dev/nvidia* nodes in a pod without GPUs" 0 "$(kc -n "$TNS" logs none | sed -n 's/^NODES=//p')"
  check "3 NVIDIA_VISIBLE_DEVICES in a pod without GPUs" "" "$(pod_nvd none)"
else
  fail "3 pod without GPUs: expected Running, saw phase $(pod_phase none)"
fi
kc -n "$TNS" delete pod one none --wait=true >/dev/null

# 4. eight pods, eight distinct GPUs; the ninth Pending, then running.
for i in 0 1 2 3 4 5 6 7; do gpu_pod "g$i" 1; done
all_ready() { local i; for i in 0 1 2 3 4 5 6 7; do pod_logged "g$i" READY || return 1; done; }
if wait_until 90 all_ready; then
  distinct=$(for i in 0 1 2 3 4 5 6 7; do pod_nvd "g$i"; done | sort -u | grep -c GPU- || true)
  check "4 distinct GPUs among eight 1-GPU pods" 8 "$distinct"
else
  fail "4 eight 1-GPU pods: expected all Running, saw $(kc -n "$TNS" get pods -l gdp-e2e --no-headers | awk '{print $1"="$3}' | tr '\n' ' ')"
fi
gpu_pod g8 1
unschedulable() {
  kc -n "$TNS" get pod g8 -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}' | grep 'Insufficient nvidia.com/gpu' >/dev/null
}
if wait_until 30 unschedulable; then
  check "4 ninth pod phase" Pending "$(pod_phase g8)"
else
  fail "4 ninth pod: expected Pending with 'Insufficient nvidia.com/gpu', saw phase $(pod_phase g8): $(kc -n "$TNS" get pod g8 -o jsonpath='{.status.conditions[*].message}')"
fi
freed=$(pod_nvd g0)
kc -n "$TNS" delete pod g0 --wait=true >/dev/null
if wait_until 60 pod_logged g8 READY; then
  check "4 ninth pod, after one of the eight was deleted, got the freed GPU" "$freed" "$(pod_nvd g8)"
else
  fail "4 ninth pod after a deletion: expected Running, saw $(pod_phase g8)"
fi

# 10. Metrics: a running GPU pod's GPU series on the plugin's /metrics
# (hostNetwork, port 9101) carry its namespace, pod and container, taken from the
# kubelet's pod-resources API; the sampler refreshes every 5 s.
g1_uuid=$(pod_nvd g1)
metrics_line() {
  curl -sf http://127.0.0.1:9101/metrics |
    grep "^gdp_gpu_temperature_celsius{" | grep "uuid=\"$g1_uuid\"" | grep 'pod="g1"'
}
if [ -n "$g1_uuid" ] && wait_until 30 metrics_line >/dev/null; then
  line=$(metrics_line)
  check "10 metrics namespace of pod g1's GPU" "namespace=\"$TNS\"" "$(grep -o "namespace=\"[^\"]*\"" <<<"$line")"
  check "10 metrics container of pod g1's GPU" 'container="c"' "$(grep -o 'container="[^"]*"' <<<"$line")"
else
  fail "10 metrics: no gdp_gpu_temperature_celsius series for GPU '$g1_uuid' with pod=\"g1\": $(curl -sf http://127.0.0.1:9101/metrics | grep -c '^gdp_gpu_' || true) gdp_gpu_ lines"
fi

# 6. XID 79 on GPU 3: allocatable 7 within 5 s, the other pods keep running; the XID
# calls for a reset (NVML's recovery action), so GPU 3 stays out past the quiet period
# until it is reset; back to 8.
pods_on=(g1 g2 g3 g4 g5 g6 g7 g8)
t=$SECONDS
gpusim xid --gpu 3 --xid 79 >/dev/null
if wait_until 5 alloc_is 7; then
  pass "6 allocatable 7 $((SECONDS - t))s after XID 79 on GPU 3"
else
  fail "6 after XID 79 on GPU 3: expected allocatable 7 within 5s, saw $(node_gpus allocatable)"
fi
uuid3=$(uuid_of 3)
not_running=""
for p in "${pods_on[@]}"; do
  [ "$(pod_nvd "$p")" = "$uuid3" ] && continue
  pod_running "$p" || not_running+="$p "
done
check "6 pods on other GPUs still Running (not running)" "" "$not_running"
if wait_until 12 alloc_is 8; then # 12 s: past the 10 s quiet period
  fail "6 GPU 3 back before the reset it needs: allocatable 8 within 12s of XID 79"
else
  check "6 allocatable past the quiet period, before the reset GPU 3 needs" 7 "$(node_gpus allocatable)"
fi
gpusim reset --gpu 3 >/dev/null || fail "6 gpusim reset --gpu 3 failed"
t=$SECONDS
if wait_until 60 alloc_is 8; then
  pass "6 allocatable 8 again $((SECONDS - t))s after the reset"
else
  fail "6 after the reset: expected allocatable 8 within 60s, saw $(node_gpus allocatable)"
fi

# 7. kubelet restart: registers again, capacity back, pods keep running, new pods schedule.
before=$(kc -n "$TNS" get pods -l gdp-e2e -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].containerID} {end}')
registrations() { kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep -c 'registered with the kubelet' || true; }
reg_before=$(registrations)
t=$SECONDS
hack/local-cluster.sh restart-kubelet >/dev/null 2>&1 || fail "7 hack/local-cluster.sh restart-kubelet failed"
registered_again() { (($(registrations) > reg_before)); }
if wait_until 30 registered_again; then
  pass "7 plugin registered again $((SECONDS - t))s after the kubelet restart"
else
  fail "7 plugin registrations: expected more than $reg_before within 30s of the kubelet restart, saw $(registrations)"
fi
if wait_until 60 gpus_are 8; then
  pass "7 capacity and allocatable 8 $((SECONDS - t))s after the kubelet restart"
else
  fail "7 after the kubelet restart: expected 8/8 within 60s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
fi
sleep_until_stable() { [ "$(kc -n "$TNS" get pods -l gdp-e2e -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].containerID} {end}')" = "$before" ]; }
if wait_until 15 sleep_until_stable; then
  pass "7 running pods kept their containers across the kubelet restart"
else
  fail "7 containers: expected $before, saw $(kc -n "$TNS" get pods -l gdp-e2e -o jsonpath='{range .items[*]}{.metadata.name}={.status.containerStatuses[0].containerID}/{.status.phase} {end}')"
fi
freed=$(pod_nvd g1)
kc -n "$TNS" delete pod g1 --wait=true >/dev/null
gpu_pod g9 1
if wait_until 60 pod_logged g9 READY; then
  check "7 new pod after the kubelet restart got the freed GPU" "$freed" "$(pod_nvd g9)"
else
  fail "7 new pod after the kubelet restart: expected Running, saw $(pod_phase g9)"
fi

# 8. plugin pod deleted: recreated, and no GPU in use handed out twice.
old=$(plugin_pod || true)
kc -n "$TNS" delete pod g2 --wait=true >/dev/null
kc -n "$NS" delete pod "$old" --wait=true >/dev/null
new_plugin_ready() {
  local p
  p=$(plugin_pod) && [ -n "$p" ] && [ "$p" != "$old" ] &&
    [ "$(kc -n "$NS" get pod "$p" -o jsonpath='{.status.containerStatuses[0].ready}')" = true ]
}
t=$SECONDS
if wait_until 60 new_plugin_ready && wait_until 30 gpus_are 8; then
  pass "8 DaemonSet recreated the plugin pod, Ready and 8/8 after $((SECONDS - t))s"
else
  fail "8 plugin pod: expected a new Ready pod and 8/8, saw pod '$(plugin_pod)' and $(node_gpus capacity)/$(node_gpus allocatable)"
fi
gpu_pod g10 1
if wait_until 60 pod_logged g10 READY; then
  dup=$(for p in g3 g4 g5 g6 g7 g8 g9 g10; do pod_nvd "$p"; done | sort | uniq -d | tr '\n' ' ')
  check "8 GPUs handed out twice among the eight pods" "" "$dup"
else
  fail "8 new pod after the plugin restart: expected Running, saw $(pod_phase g10)"
fi

# L. The node changes under the plugin: hot-add, removal of an allocated GPU, the
# driver stopped and started (test/e2e/lifecycle.sh).
source test/e2e/lifecycle.sh

# 9. invalid config: the plugin names the field and keeps its last good config.
pp=$(plugin_pod || true)
restarts=$(kc -n "$NS" get pod "$pp" -o jsonpath='{.status.containerStatuses[0].restartCount}')
kc -n "$NS" patch configmap "$RELEASE" --type merge \
  -p '{"data":{"config.yaml":"version: v1\nflags:\n  migStrategy: sideways\n"}}' >/dev/null
# Nudge the kubelet to resync the pod's volumes now rather than at its next periodic sync.
kc -n "$NS" annotate pod "$pp" gdp-e2e/nudge="$(date +%s)" --overwrite >/dev/null
rejected() { kc -n "$NS" logs "$pp" | grep 'flags.migStrategy' >/dev/null; }
t=$SECONDS
if wait_until 90 rejected; then
  pass "9 after $((SECONDS - t))s the plugin log names the bad field: $(kc -n "$NS" logs "$pp" | grep 'flags.migStrategy' | head -1 | cut -c1-200)"
else
  fail "9 invalid config: expected a log line naming flags.migStrategy within 90s, saw: $(kc -n "$NS" logs "$pp" --tail 3 | tr '\n' ' ')"
fi
if kc -n "$NS" logs "$pp" | grep 'config reload rejected; keeping the running config' >/dev/null; then
  pass "9 plugin says it keeps the running config"
else
  fail "9 expected 'config reload rejected; keeping the running config' in the plugin log, saw: $(kc -n "$NS" logs "$pp" | grep -i config | tail -3 | tr '\n' ' ')"
fi
check "9 plugin restarts after the invalid config" "$restarts" "$(kc -n "$NS" get pod "$pp" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
check "9 allocatable with the last good config" 8 "$(node_gpus allocatable)"
# 5. A 4-GPU pod gets an NVLink-consistent set chosen by GetPreferredAllocation. On the
# dgx-h100 every pair is NVLinked (18 links through NVSwitch), so every pair scores the
# same and GetPreferredAllocation breaks the tie towards the lowest positions: GPUs 0-3,
# also the GPUs of NUMA node 0. Without it the kubelet picks any 4 of 8 (1 in 70).
kc -n "$TNS" delete pods -l gdp-e2e --wait=true >/dev/null
gpu_pod quad 4
if wait_until 60 pod_logged quad READY; then
  want=$(for i in 0 1 2 3; do uuid_of "$i"; done | sort | tr '\n' ' ')
  check "5 the 4-GPU pod's GPUs (0-3)" "$want" "$(pod_nvd quad | tr ',' '\n' | sort | tr '\n' ' ')"
  check "5 /dev/nvidiaN nodes opening with ENXIO in the 4-GPU pod" "0 1 2 3" \
    "$(kc -n "$TNS" logs quad | grep -E '^dev[0-7]: .*No such device or address' | sed 's/^dev\([0-7]\):.*/\1/' | tr '\n' ' ' | sed 's/ $//')"
else
  fail "5 4-GPU pod: expected Running, saw $(pod_phase quad)"
fi

# 11. kubectl-gpu agrees with the API server on every node (one or two), names the 4-GPU
# pod's container with the GPUs it was given (the daemon's /allocations at the node's
# InternalIP:9101), and the plugin logged the doctor's checks at start.
if [ -x "$KUBECTL_GPU" ]; then
  kg=$("$KUBECTL_GPU" -o json 2>&1) || kg=""
  if [ -z "$kg" ]; then
    fail "11 kubectl-gpu -o json: expected exit 0, saw: $("$KUBECTL_GPU" -o json 2>&1 | tail -2 | tr '\n' ' ')"
  else
    for n in $(kc get nodes -o jsonpath='{.items[*].metadata.name}'); do
      cap=$(kc get node "$n" -o jsonpath='{.status.capacity.nvidia\.com/gpu}')
      alloc=$(kc get node "$n" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')
      want_use=$(kc get pods -A -o json | jq --arg n "$n" '[.items[] | select(.spec.nodeName == $n and (.status.phase == "Running" or .status.phase == "Pending")) | .spec.containers[] | (.resources.requests["nvidia.com/gpu"] // .resources.limits["nvidia.com/gpu"] // "0" | tonumber)] | add // 0')
      row() { jq -r --arg n "$n" --arg f "$1" '.nodes[] | select(.name == $n) | .resources[] | select(.name == "nvidia.com/gpu") | .[$f]' <<<"$kg"; }
      check "11 kubectl-gpu capacity of $n" "${cap:-0}" "$(row capacity)"
      check "11 kubectl-gpu allocatable of $n" "${alloc:-0}" "$(row allocatable)"
      check "11 kubectl-gpu in use on $n" "$want_use" "$(row inUse)"
      check "11 kubectl-gpu unhealthy on $n" "$((${cap:-0} - ${alloc:-0}))" "$(row unhealthy)"
    done
    quad_devs=$(jq -r --arg ns "$TNS" '.nodes[].holdings[] | select(.namespace == $ns and .pod == "quad") | .devices | sort | join(",")' <<<"$kg")
    check "11 kubectl-gpu names quad's GPUs (from /allocations)" "$(pod_nvd quad | tr ',' '\n' | sort | paste -sd, -)" "$quad_devs"
    "$KUBECTL_GPU" | grep -E "^$NODE +$TNS/quad/c +nvidia.com/gpu +4 " >/dev/null &&
      pass "11 kubectl-gpu table lists $TNS/quad/c with 4 GPUs" ||
      fail "11 kubectl-gpu table: expected a row '$NODE $TNS/quad/c nvidia.com/gpu 4', saw: $("$KUBECTL_GPU" | grep quad || true)"
  fi
else
  fail "11 kubectl-gpu: $KUBECTL_GPU not built (hack/build.sh release kubectl-gpu)"
fi
if kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep -E 'doctor summary' >/dev/null; then
  pass "11 the plugin logged the doctor's checks at start"
else
  fail "11 expected 'doctor summary' in the plugin's log, saw: $(kc -n "$NS" logs "$(plugin_pod)" 2>&1 | grep doctor | tail -2 | tr '\n' ' ')"
fi

# The chart's memory limit (64Mi) must leave room: the daemon's resident set, measured.
cid=$(crictl ps --name gpu-device-plugin -q 2>/dev/null | head -1 || true)
pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$cid" 2>/dev/null || true)
rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
if [ -n "$rss_kb" ] && ((rss_kb < 48 * 1024)); then
  pass "resident memory of the plugin ${rss_kb} KiB (limit 64Mi)"
else
  fail "plugin resident memory: expected under 48 MiB, saw '${rss_kb:-unknown} KiB' (container '$cid', pid '$pid')"
fi
# 9, continued: with no good config to keep (a fresh pod, the ConfigMap still invalid),
# the plugin refuses to start and says why.
old=$(plugin_pod || true)
kc -n "$NS" delete pod "$old" --wait=true >/dev/null
refused() {
  local p
  p=$(plugin_pod) && [ -n "$p" ] && [ "$p" != "$old" ] &&
    [ -n "$(kc -n "$NS" get pod "$p" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}{.status.containerStatuses[0].lastState.terminated.exitCode}')" ]
}
if wait_until 60 refused; then
  np=$(plugin_pod)
  code=$(kc -n "$NS" get pod "$np" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}{.status.containerStatuses[0].lastState.terminated.exitCode}')
  # Its log, current or previous: the kubelet may be restarting the container as we ask.
  names_field() { { kc -n "$NS" logs "$np" 2>/dev/null; kc -n "$NS" logs "$np" --previous 2>/dev/null; } | grep 'flags.migStrategy (line 3)' >/dev/null; }
  if [ "$code" != 0 ] && wait_until 20 names_field; then
    pass "9 a fresh plugin pod with the invalid config exits with code $code, naming flags.migStrategy"
  else
    fail "9 fresh plugin pod with the invalid config: expected a non-zero exit and a log naming flags.migStrategy, saw exit '$code' and: $(kc -n "$NS" logs "$np" 2>&1 | tail -2 | tr '\n' ' ')"
  fi
else
  fail "9 fresh plugin pod with the invalid config: expected it to exit within 60s, saw pod '$(plugin_pod)' $(kc -n "$NS" get pods -l app.kubernetes.io/name=gpu-device-plugin --no-headers 2>&1)"
fi
# Sharing, MIG and CDI.
source test/e2e/sharing.sh
# NVIDIA's config format, variables, per-model names and device extras.
source test/e2e/dropin.sh
# NVIDIA's container runtime in its CDI modes.
source test/e2e/runtime.sh
# TLS and Kubernetes authorisation on the metrics port.
source test/e2e/secure.sh
# The release from a registry: signed, verified, installed by digest, upgraded, rolled back.
source test/e2e/release.sh
echo "scenarios done in $((SECONDS - t_start))s"
