# The node changes under the running plugin, sourced by test/e2e/run.sh after scenario
# 8 (pods g3..g10 hold the dgx-h100's eight GPUs; it defines pass/fail/check):
#   L1 a GPU hot-added: capacity 9 with the same plugin container (no restart).
#   L2 that GPU, allocated to a pod, removed: the pod keeps running, the GPU stays out of
#      allocatable (listed Unhealthy) until the pod ends, then capacity is 8 again.
#   L3 the driver stopped and started: `gpusim driver stop` succeeds because the plugin
#      let go of NVML (it fails with EBUSY while any process holds the driver), every GPU
#      is Unhealthy and /readyz says why meanwhile, the same container serves all 8 after.
#   L4 the GPU Operator's deploy label: paused-for-driver-upgrade makes the plugin let go
#      of the driver (a plain `gpusim driver stop` succeeds) and report not ready; true
#      brings it back, in the same container.
#   L5 named configs: the node label nvidia.com/device-plugin.config=timeslice4 turns the
#      8 GPUs into 32 replicas live, removing it turns them back, and a label naming a
#      missing config keeps the running config and records a node event.
#   L6 the admission policy: the plugin's service account may change its own Node only.
# The node is left as it was found: the same eight GPUs, the same pods, the same chart.
# shellcheck shell=bash

plugin_container() { kc -n "$NS" get pod "$(plugin_pod)" -o jsonpath='{.status.containerStatuses[0].containerID}'; }
capacity_is() { [ "$(node_gpus capacity)" = "$1" ]; }
cid_before=$(plugin_container)

# --- L1: hot-add -------------------------------------------------------------------------
t=$SECONDS
added=$(gpusim add | awk '/GPU-/ { for (i = 1; i <= NF; i++) if ($i ~ /^GPU-/) print $i }' | head -1)
if wait_until 30 gpus_are 9; then
  pass "L1 capacity and allocatable 9 $((SECONDS - t))s after a GPU was hot-added ($added)"
else
  fail "L1 hot-add: expected 9/9 within 30s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
fi
check "L1 the plugin container is the same (no restart)" "$cid_before" "$(plugin_container)"
added_event() { events_of "$NODE" GpuNodeChanged | grep "GPU added: $added" >/dev/null; }
if wait_until 15 added_event; then
  pass "L1 node event: $(events_of "$NODE" GpuNodeChanged | grep "GPU added" | head -1 | cut -c1-140)"
else
  fail "L1 expected a GpuNodeChanged node event naming $added, saw: $(events_of "$NODE" GpuNodeChanged | tr '\n' ';')"
fi

# --- L2: remove the new GPU while a pod holds it -----------------------------------------
gpu_pod g11 1
if wait_until 60 pod_logged g11 READY; then
  check "L2 the pod on the ninth GPU got the hot-added one" "$added" "$(pod_nvd g11)"
else
  fail "L2 pod g11: expected Running on the hot-added GPU, saw $(pod_phase g11)"
fi
t=$SECONDS
gpusim remove --uuid "$added" >/dev/null || fail "L2 gpusim remove --uuid $added failed"
if wait_until 30 alloc_is 8; then
  pass "L2 allocatable 8 $((SECONDS - t))s after removing the GPU pod g11 holds"
else
  fail "L2 removal: expected allocatable 8 within 30s, saw $(node_gpus allocatable)"
fi
check "L2 capacity while the pod holds the removed GPU (listed Unhealthy)" 9 "$(node_gpus capacity)"
check "L2 the pod holding the removed GPU keeps running" Running "$(pod_phase g11)"
kc -n "$TNS" delete pod g11 --wait=true >/dev/null
t=$SECONDS
if wait_until 30 gpus_are 8; then
  pass "L2 capacity and allocatable 8 $((SECONDS - t))s after the pod released the removed GPU"
else
  fail "L2 release: expected 8/8 within 30s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
fi
check "L2 the plugin container is the same" "$cid_before" "$(plugin_container)"

# --- L3: driver stop and start -------------------------------------------------------------
t=$SECONDS
if out=$(gpusim driver stop --wait 60s 2>&1); then
  pass "L3 gpusim driver stop succeeded after $((SECONDS - t))s: the plugin let go of the driver"
else
  fail "L3 gpusim driver stop: expected success once the plugin lets go, saw: $out"
fi
if wait_until 30 alloc_is 0; then
  pass "L3 allocatable 0 while the driver is away"
else
  fail "L3 driver away: expected allocatable 0, saw $(node_gpus allocatable)"
fi
check "L3 capacity while the driver is away (still registered)" 8 "$(node_gpus capacity)"
ready=$(curl -s http://127.0.0.1:9101/readyz || true)
case "$ready" in
*"driver is unavailable"*) pass "L3 /readyz while the driver is away: $ready" ;;
*) fail "L3 /readyz: expected 'not ready: the NVIDIA driver is unavailable ...', saw '$ready'" ;;
esac
t=$SECONDS
gpusim driver start >/dev/null || fail "L3 gpusim driver start failed"
if wait_until 60 gpus_are 8; then
  pass "L3 capacity and allocatable 8 $((SECONDS - t))s after the driver came back"
else
  fail "L3 driver back: expected 8/8 within 60s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
fi
check "L3 the plugin container is the same" "$cid_before" "$(plugin_container)"
not_running=""
for p in g3 g4 g5 g6 g7 g8 g9 g10; do pod_running "$p" || not_running+="$p "; done
check "L3 pods holding GPUs kept running through the driver restart (not running)" "" "$not_running"

# --- L4: the GPU Operator's deploy label -------------------------------------------------
deploy_label=nvidia.com/gpu.deploy.device-plugin
t=$SECONDS
kc label node "$NODE" "$deploy_label=paused-for-driver-upgrade" --overwrite >/dev/null
if wait_until 30 alloc_is 0; then
  pass "L4 $deploy_label=paused-for-driver-upgrade: allocatable 0 after $((SECONDS - t))s"
else
  fail "L4 paused: expected allocatable 0 within 30s, saw $(node_gpus allocatable)"
fi
ready=$(curl -s http://127.0.0.1:9101/readyz || true)
case "$ready" in
*"paused by node label $deploy_label=paused-for-driver-upgrade"*) pass "L4 /readyz while paused: $ready" ;;
*) fail "L4 /readyz while paused: expected 'paused by node label ...', saw '$ready'" ;;
esac
if out=$(gpusim driver stop 2>&1); then
  pass "L4 gpusim driver stop (no wait) succeeds while the plugin is paused"
else
  fail "L4 driver stop while paused: expected success, saw: $out"
fi
gpusim driver start >/dev/null || fail "L4 gpusim driver start failed"
t=$SECONDS
kc label node "$NODE" "$deploy_label=true" --overwrite >/dev/null
if wait_until 30 gpus_are 8; then
  pass "L4 $deploy_label=true: capacity and allocatable 8 after $((SECONDS - t))s"
else
  fail "L4 resumed: expected 8/8 within 30s, saw $(node_gpus capacity)/$(node_gpus allocatable)"
fi
check "L4 the plugin container is the same" "$cid_before" "$(plugin_container)"
kc label node "$NODE" "$deploy_label-" >/dev/null

# --- L5: named configs picked by a node label ------------------------------------------------
named_values=$(mktemp)
cat >"$named_values" <<'YAML'
nodeConfigs:
  enabled: true
  map:
    default: |
      version: v1
      health:
        recoveryQuietPeriod: 10s
        probeInterval: 1s
    timeslice4: |
      version: v1
      health:
        recoveryQuietPeriod: 10s
        probeInterval: 1s
      sharing:
        timeSlicing:
          resources:
          - name: nvidia.com/gpu
            replicas: 4
YAML
config_label=nvidia.com/device-plugin.config
old_pod=$(plugin_pod)
helm upgrade "$RELEASE" "$CHART" --namespace "$NS" -f "$values" -f "$named_values" >/dev/null
named_ready() { plugin_replaced "$old_pod" && gpus_are 8; }
if wait_until 90 named_ready; then
  pass "L5 the plugin runs with named configs (fallback named: default), 8/8"
else
  fail "L5 with named configs: expected a Ready plugin and 8/8, saw pod '$(plugin_pod)' and $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
fi
cid_named=$(plugin_container)
# served_ms T0_NS: ms from T0 (date +%s%N) to the plugin's first "serving resources" log
# line after it (the new resources handed to the kubelet); "" when none.
served_ms() {
  local ts
  ts=$(kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | awk '/ serving resources /{ print $1 }' | while read -r l; do
    n=$(date -d "$l" +%s%N 2>/dev/null) && ((n >= $1)) && { echo "$n"; break; }
  done)
  [ -n "$ts" ] && echo $(((ts - $1) / 1000000))
}
# Three round trips: label on (32 replicas), label off (8 GPUs). Each is timed to the
# plugin serving the new resources (its log) and to the node's capacity and allocatable
# (which also waits for the kubelet's node status update, every 2 s on this cluster).
served=()
node_ms=()
flip_fail=""
for i in 1 2 3; do
  for want in 32 8; do
    t=$(date +%s%N)
    if [ "$want" = 32 ]; then
      kc label node "$NODE" "$config_label=timeslice4" --overwrite >/dev/null
    else
      kc label node "$NODE" "$config_label-" >/dev/null
    fi
    if wait_until 30 gpus_are "$want"; then
      node_ms+=($((($(date +%s%N) - t) / 1000000)))
      served+=("$(served_ms "$t")")
    else
      flip_fail+="#$i want $want: $(node_gpus capacity)/$(node_gpus allocatable) "
    fi
  done
done
if [ -z "$flip_fail" ]; then
  pass "L5 $config_label=timeslice4 turns 8 GPUs into 32 replicas and back, live, 3 times; node capacity after ${node_ms[*]} ms"
  max=$(printf '%s\n' "${served[@]}" | sort -n | tail -1)
  if [ "${#served[@]}" = 6 ] && [ -n "$max" ] && ((max < 2000)); then
    pass "L5 label change to the new resources served to the kubelet: ${served[*]} ms (max $max, target < 2000)"
  else
    fail "L5 label change to the new resources served: expected 6 times under 2000 ms, saw '${served[*]}'"
  fi
else
  fail "L5 label flips: expected 32/32 with the label and 8/8 without, saw $flip_fail"
  kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
fi
kc label node "$NODE" "$config_label=no-such-config" --overwrite >/dev/null
invalid_event() { events_of "$NODE" GpuPluginConfigInvalid | grep 'no-such-config' >/dev/null; }
if wait_until 30 invalid_event; then
  pass "L5 node event for a label naming a missing config: $(events_of "$NODE" GpuPluginConfigInvalid | head -1 | cut -c1-160)"
else
  fail "L5 missing config: expected a GpuPluginConfigInvalid node event naming no-such-config, saw: $(events_of "$NODE" GpuPluginConfigInvalid | tr '\n' ';')"
fi
check "L5 the running config is kept (capacity)" 8 "$(node_gpus capacity)"
ready=$(curl -s http://127.0.0.1:9101/readyz || true)
case "$ready" in
*"names no config"*) pass "L5 /readyz names the problem: $(cut -c1-160 <<<"$ready")" ;;
*) fail "L5 /readyz with a missing config: expected 'names no config', saw '$ready'" ;;
esac
check "L5 the plugin container is the same throughout" "$cid_named" "$(plugin_container)"
kc label node "$NODE" "$config_label-" >/dev/null

# --- L6: the admission policy keeps the plugin's identity to its own Node ---------------------
sa_token=$(kc -n "$NS" create token "$RELEASE" --bound-object-kind Pod --bound-object-name "$(plugin_pod)" \
  --bound-object-uid "$(kc -n "$NS" get pod "$(plugin_pod)" -o jsonpath='{.metadata.uid}')" 2>/dev/null || true)
sa_kubeconfig=$(mktemp)
kc config view --raw --minify -o json | python3 -c '
import json, sys
c = json.load(sys.stdin)["clusters"][0]["cluster"]
print(json.dumps({"apiVersion": "v1", "kind": "Config",
  "clusters": [{"name": "c", "cluster": c}],
  "users": [{"name": "u", "user": {"token": sys.argv[1]}}],
  "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))' "$sa_token" >"$sa_kubeconfig"
if [ -n "$sa_token" ] && kubectl --kubeconfig "$sa_kubeconfig" label node "$NODE" gdp-e2e/own=yes --overwrite >/dev/null 2>&1; then
  pass "L6 the plugin's service account labels its own node"
else
  fail "L6 own node: expected the plugin's token to label $NODE, saw: $(kubectl --kubeconfig "$sa_kubeconfig" label node "$NODE" gdp-e2e/own=yes --overwrite 2>&1 | tail -1)"
fi
kc label node "$NODE" gdp-e2e/own- >/dev/null 2>&1 || true
if [ "$E2E_NODES" = 2 ]; then
  other=$(kubectl --kubeconfig "$sa_kubeconfig" label node "$NODE1" gdp-e2e/other=yes --overwrite 2>&1 || true)
  case "$other" in
  *"may change only the node its pod runs on"*) pass "L6 the plugin's token is refused on $NODE1: $(tail -1 <<<"$other" | cut -c1-160)" ;;
  *) fail "L6 other node: expected the admission policy to refuse the plugin's token on $NODE1, saw: $other" ;;
  esac
fi
rm -f "$sa_kubeconfig" "$named_values"

# Back to the chart as it was, for the scenarios that follow.
old_pod=$(plugin_pod)
helm upgrade "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
restored() { plugin_replaced "$old_pod" && gpus_are 8; }
wait_until 90 restored || fail "L restoring the chart: expected a Ready plugin and 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
