# The node changes under the running plugin, sourced by test/e2e/run.sh after scenario
# 8 (pods g3..g10 hold the dgx-h100's eight GPUs; it defines pass/fail/check):
#   L1 a GPU hot-added: capacity 9 with the same plugin container (no restart).
#   L2 that GPU, allocated to a pod, removed: the pod keeps running, the GPU stays out of
#      allocatable (listed Unhealthy) until the pod ends, then capacity is 8 again.
#   L3 the driver stopped and started: `gpusim driver stop` succeeds because the plugin
#      let go of NVML (it fails with EBUSY while any process holds the driver), every GPU
#      is Unhealthy and /readyz says why meanwhile, the same container serves all 8 after.
# The node is left as it was found: the same eight GPUs, the same pods.
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
