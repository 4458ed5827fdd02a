# The sharing scenarios (docs/sharing.md) against the real node, sourced by
# test/e2e/run.sh after its own (it defines pass/fail/check and brings the cluster up):
#   S1 time-slicing, 4 replicas of each dgx-h100 GPU, served through CDI alone: capacity 32,
#      32 one-replica pods run, each sees exactly its GPU; the spec passes the CDI
#      project's validator; with the driver's user space from the spec, `nvidia-smi -L` in
#      a pod of the workload image lists exactly the GPUs of its replicas; a CUDA
#      workload's memory and load show on its GPU's /metrics series; with the packed
#      policy four pods share one GPU, each sees it alone, and their loads add up.
#   S2 MPS, 2 replicas per GPU, packed: two pods share one GPU's MPS server; each gets its
#      limits and its GPU's pipe directory; the control daemon (the stand-in
#      nvidia-cuda-mps-control) received the same limits; its server refuses an
#      allocation past a pod's limit (also when the pod raises its own variable) and
#      caps a pod's load at its thread share, while both pods hold their limits at once.
#   S3 MIG mixed on a100-mig: one resource per profile with the node's counts; a MIG pod
#      runs with its MIG UUID, its parent's node and its two nvidia-caps nodes.
#   S4 MIG re-laid while the plugin runs (as mig-parted does): the node's nvidia.com/mig-*
#      capacities follow at once, a profile that leaves goes to 0, one that arrives
#      appears, and the plugin container is the same.
# shellcheck shell=bash

MPS_ROOT=${GDP_MPS_ROOT:-/var/tmp/gdp-mps}
# NVIDIA's container toolkit (hack/nvidia-toolkit.sh, built by hack/e2e.sh).
TOOLKIT_BIN=${GDP_NVIDIA_TOOLKIT_BIN:-$(hack/nvidia-toolkit.sh | tail -n 1)}
CDI_VALIDATE=$(k8s_bin_dir)/cdi-validate

# The GPU index whose /dev/nvidiaN opens with ENXIO in a pod ("" when none or several).
pod_own_gpu() {
  local own
  own=$(kc -n "$TNS" logs "$1" 2>/dev/null | grep -E '^dev[0-7]: .*No such device or address' | sed 's/^dev\([0-7]\):.*/\1/' || true)
  [ "$(wc -w <<<"$own")" = 1 ] && echo "$own"
}
pod_field() { kc -n "$TNS" logs "$1" 2>/dev/null | sed -n "s/^$2=//p" | head -1; }

delete_test_pods

# --- S1: time-slicing x4 over CDI alone ------------------------------------------------
# The driver's nvidia-persistenced (the simulator's stand-in) runs on the host, so the spec
# the plugin writes mounts its socket into GPU containers, as NVIDIA's toolkit does.
"$GPUROOT/usr/bin/nvidia-persistenced" 8>&- || fail "S1 the nvidia-persistenced stand-in did not start"
s1_config="flags:
  plugin:
    deviceListStrategy: cdi-cri
    passDeviceSpecs: false
health:
  probeInterval: 1s
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 4"
sharing_chart "$s1_config" "cdi: {enabled: true, hostPath: /var/run/cdi}"
t=$SECONDS
if wait_until 90 resource_is nvidia.com/gpu 32; then
  pass "S1 time-slicing x4: capacity and allocatable nvidia.com/gpu = 32 after $((SECONDS - t))s"
else
  fail "S1 time-slicing x4: expected 32/32 within 90s, saw $(capacity_of nvidia.com/gpu)/$(allocatable_of nvidia.com/gpu)"
  kc -n "$NS" logs -l app.kubernetes.io/name=gpu-device-plugin --tail 20 || true
fi
spec=/var/run/cdi/gpu-device-plugin.nvidia.com-gpu.json
check "S1 the CDI spec passes the CDI project's validator" "valid: nvidia.com/gpu, 32 devices" \
  "$("$CDI_VALIDATE" "$spec" "nvidia.com/gpu=$(uuid_of 5)::3" 2>&1 | tr '\n' ' ' | sed 's/ $//')"
# smi_pod NAME COUNT: a pod of the workload image (glibc, no driver file) asking for COUNT
# replicas that runs nvidia-smi -L with what the CDI spec gave it.
smi_pod() { GPU_POD_IMAGE=gpu-workload GPU_POD_RUN='nvidia-smi -L; echo "RC=$?"' gpu_pod "$1" "$2"; }
smi_pod smi1 1
smi_pod smi2 2
smi_ready() { pod_logged smi1 READY && pod_logged smi2 READY; }
if wait_until 60 smi_ready; then
  listing=$("$PODRESOURCES" 2>&1 || true)
  for p in smi1 smi2; do
    # The GPUs of its replicas (GPU-<uuid>::<n>), each once, against what nvidia-smi lists.
    want=$(awk -v p="$TNS/$p/c" '$1 == p { print $3 }' <<<"$listing" | tr ',' '\n' | sed 's/::.*//' | sort -u | tr '\n' ' ')
    saw=$(kc -n "$TNS" logs "$p" 2>/dev/null | sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[^)]*\))$/\1/p' | sort | tr '\n' ' ')
    # "RC=0 <GPUs>": nvidia-smi succeeded, and its list is the replicas' GPUs.
    check "S1 nvidia-smi -L in the $p pod lists exactly its replicas' GPUs" \
      "RC=0 ${want:-none}" "RC=$(pod_field "$p" RC) ${saw:-none}"
  done
else
  fail "S1 nvidia-smi pods: expected Running, saw $(pod_phase smi1) $(pod_phase smi2): $(kc -n "$TNS" logs smi1 2>&1 | head -3 | tr '\n' ' ')"
fi
delete_test_pods
# A CUDA workload in a pod (the simulated libcuda from the spec): the plugin's /metrics
# shows its memory and load on its GPU's series, with the pod's labels.
GPU_POD_IMAGE=gpu-workload GPU_POD_RUN='cuda-workload --mib 20480 --load 60 --seconds 600 >/tmp/w.log 2>&1 &' \
  gpu_pod work 1
work_series() { # METRIC: the value of the work pod's GPU series of METRIC
  curl -sf http://127.0.0.1:9101/metrics | grep "^$1{" | grep 'pod="work"' | awk '{ print $NF }' | head -1
}
work_busy() {
  awk -v m="$(work_series gdp_gpu_framebuffer_used_bytes)" -v u="$(work_series gdp_gpu_utilization_ratio)" \
    'BEGIN { exit !(m >= 20480 * 1048576 && u == 0.6) }'
}
t=$SECONDS
if wait_until 60 pod_logged work READY && wait_until 60 work_busy; then
  pass "S1 a CUDA workload's 20 GiB and 60% show on its GPU's series with pod=\"work\" $((SECONDS - t))s after it started"
else
  fail "S1 the CUDA workload's use on /metrics: expected >= 20 GiB and 0.6 with pod=\"work\", saw $(work_series gdp_gpu_framebuffer_used_bytes) bytes and $(work_series gdp_gpu_utilization_ratio) ($(pod_phase work); $(kc -n "$TNS" exec work -- cat /tmp/w.log 2>&1 | tr '\n' ' '))"
fi
delete_test_pods
# Four time-sliced pods on one GPU (the packed policy fills one GPU first): each sees that
# GPU alone, and their loads add up on it. This spec names NVIDIA's nvidia-cdi-hook (built
# from the toolkit's Go module): the libraries' links and the ld cache are its work.
sharing_chart "${s1_config/sharing:/sharing:
  allocationPolicy: packed}" "cdi: {enabled: true, hostPath: /var/run/cdi, hookPath: $TOOLKIT_BIN/nvidia-cdi-hook}"
wait_until 90 resource_is nvidia.com/gpu 32 || fail "S1 packed: expected 32/32 within 90s, saw $(capacity_of nvidia.com/gpu)"
for i in 0 1 2 3; do
  GPU_POD_IMAGE=gpu-workload \
    GPU_POD_RUN='echo "LINK=$(readlink /usr/lib/x86_64-linux-gnu/libcuda.so.1)"; nvidia-smi -L; cuda-workload --mib 5120 --load 15 --seconds 600 >/tmp/w.log 2>&1 &' \
    gpu_pod "four$i" 1
done
four_ready() { local i; for i in 0 1 2 3; do pod_logged "four$i" READY || return 1; done; }
four_series() { # METRIC: the value of four0's GPU series of METRIC
  curl -sf http://127.0.0.1:9101/metrics | grep "^$1{" | grep 'pod="four0"' | awk '{ print $NF }' | head -1
}
four_busy() {
  awk -v m="$(four_series gdp_gpu_framebuffer_used_bytes)" -v u="$(four_series gdp_gpu_utilization_ratio)" \
    'BEGIN { exit !(m >= 4 * 5120 * 1048576 && u == 0.6) }'
}
if wait_until 90 four_ready; then
  seen=$(for i in 0 1 2 3; do kc -n "$TNS" logs "four$i" 2>/dev/null | sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[^)]*\))$/\1/p' | tr '\n' ' '; echo; done | sort | uniq -c | awk '{ print $1, NF - 1 }')
  check "S1 four time-sliced pods each see the same one GPU" "4 1" "$seen"
  check "S1 with nvidia-cdi-hook in the spec, libcuda.so.1 in a pod is the hook's link" \
    "libcuda.so.$(gpusim show | awk '$1 == "driver" { print $3 }')" "$(pod_field four0 LINK)"
  if wait_until 30 four_busy; then
    pass "S1 four time-sliced workloads of 15% and 5 GiB on one GPU add up to 0.6 and 20 GiB on its series"
  else
    fail "S1 four time-sliced workloads: expected >= 20 GiB and 0.6, saw $(four_series gdp_gpu_framebuffer_used_bytes) bytes and $(four_series gdp_gpu_utilization_ratio)"
  fi
else
  fail "S1 four time-sliced pods: expected Running, saw $(for i in 0 1 2 3; do pod_phase "four$i"; done | tr '\n' ' ')"
fi
delete_test_pods
for i in $(seq 0 31); do gpu_pod "ts$i" 1; done
ts_ready() { local i; for i in $(seq 0 31); do pod_logged "ts$i" READY || return 1; done; }
t=$SECONDS
if wait_until 300 ts_ready; then
  pass "S1 32 one-replica pods running after $((SECONDS - t))s"
  # The spec's driver mounts: the library under both its names, the firmware of its version.
  check "S1 a pod has the driver's library (two names) and firmware through the CDI spec" \
    "2 $(gpusim show | awk '$1 == "driver" { print $3 }')" "$(pod_field ts0 DRIVER)"
  # Each pod: exactly one GPU node that opens (ENXIO), the GPU of its replica, and the
  # spec's NVIDIA_VISIBLE_DEVICES=void (CDI alone gave it the device).
  declare -A per_gpu=()
  bad=""
  listing=$("$PODRESOURCES" 2>&1 || true)
  for i in $(seq 0 31); do
    own=$(pod_own_gpu "ts$i")
    replica=$(awk -v p="$TNS/ts$i/c" '$1 == p && $2 == "nvidia.com/gpu" { print $3 }' <<<"$listing")
    if [ -z "$own" ] || [ "${replica%%::*}" != "$(uuid_of "$own")" ] || [ "$(pod_nvd "ts$i")" != void ]; then
      bad+=" ts$i(node=$own replica=$replica nvd=$(pod_nvd "ts$i"))"
    fi
    per_gpu[$own]=$((${per_gpu[$own]:-0} + 1))
  done
  check "S1 pods whose only GPU node is not their replica's GPU (or whose NVIDIA_VISIBLE_DEVICES is not the spec's void)" "" "$bad"
  check "S1 replicas per GPU" "4 4 4 4 4 4 4 4" \
    "$(for g in 0 1 2 3 4 5 6 7; do echo -n "${per_gpu[$g]:-0} "; done | sed 's/ $//')"
  check "S1 distinct replicas among the 32 pods" 32 \
    "$(grep -E "^$TNS/ts[0-9]+/c nvidia.com/gpu" <<<"$listing" | awk '{print $3}' | sort -u | wc -l)"
else
  fail "S1 32 one-replica pods: expected all running within 300s, saw $(kc -n "$TNS" get pods -l gdp-e2e --no-headers | awk '{print $3}' | sort | uniq -c | tr '\n' ' ')"
fi
delete_test_pods

# --- S2: MPS, 2 replicas per GPU -------------------------------------------------------
# Packed, so that two pods share one GPU's MPS server; CDI with the driver's user space, so
# that the workload image's CUDA calls reach that server through the pipe directory.
s2_config="flags:
  plugin:
    deviceListStrategy: cdi-cri
    passDeviceSpecs: false
health:
  probeInterval: 1s
sharing:
  allocationPolicy: packed
  mps:
    root: $MPS_ROOT
    resources:
    - name: nvidia.com/gpu
      replicas: 2"
s2_values="mps: {enabled: true, root: $MPS_ROOT}
cdi: {enabled: true, hostPath: /var/run/cdi}"
sharing_chart "$s2_config" "$s2_values"
t=$SECONDS
if wait_until 90 resource_is nvidia.com/gpu 16; then
  pass "S2 MPS x2: capacity and allocatable nvidia.com/gpu = 16 after $((SECONDS - t))s"
else
  fail "S2 MPS x2: expected 16/16 within 90s, saw $(capacity_of nvidia.com/gpu)/$(allocatable_of nvidia.com/gpu)"
  kc -n "$NS" logs -l app.kubernetes.io/name=gpu-device-plugin --tail 20 || true
fi
GPU_POD_IMAGE=gpu-workload gpu_pod mps0 1
GPU_POD_IMAGE=gpu-workload gpu_pod mps1 1
mps_ready() { pod_logged mps0 READY && pod_logged mps1 READY; }
if wait_until 60 mps_ready; then
  listing=$("$PODRESOURCES" 2>&1 || true)
  replica_gpu() { awk -v p="$TNS/$1/c" '$1 == p && $2 == "nvidia.com/gpu" { print $3 }' <<<"$listing" | sed 's/::.*//'; }
  gpu=$(replica_gpu mps0)
  check "S2 packed: both MPS pods got replicas of one GPU" "$gpu" "$(replica_gpu mps1)"
  # Half of the GPU's memory in MiB (the dgx-h100 profile's memoryMiB).
  total_mib=$(awk '$1 == "memoryMiB:" { print $2; exit }' sim/profiles/dgx-h100.yaml)
  mps=$(pod_field mps0 MPS)
  check "S2 the MPS pod's pipe directory and thread share" "/run/nvidia-mps|50" "${mps%%|*}|${mps##*|}"
  limit=$(cut -d'|' -f2 <<<"$mps")
  check "S2 the MPS pod's memory limit (half its GPU)" "0=$((total_mib / 2))M" "$limit"
  check "S2 the MPS pod sees its GPU's control socket in CUDA_MPS_PIPE_DIRECTORY" control "$(pod_field mps0 MPSPIPE | tr ' ' '\n' | grep -x control || true)"
  sent=$(cat "$MPS_ROOT/$gpu/log/commands.log" 2>/dev/null | tr '\n' ';' || true)
  check "S2 the stand-in MPS daemon of that GPU received the pod's memory limit" yes \
    "$(grep -q "set_default_device_pinned_mem_limit 0 ${limit#0=}" <<<"$sent" && echo yes || echo "no: $sent")"
  check "S2 the stand-in MPS daemon received the thread share" yes \
    "$(grep -q "set_default_active_thread_percentage 50" <<<"$sent" && echo yes || echo "no: $sent")"
  # The limits hold where MPS holds them, in its server: past its limit a pod's allocation
  # is CUDA's out-of-memory error on an otherwise idle GPU, also when the pod raises its own
  # CUDA_MPS_PINNED_DEVICE_MEM_LIMIT.
  mib=$((total_mib / 2))
  in_pod() { kc -n "$TNS" exec "$1" -- sh -c "$2; echo RC=\$?" 2>&1 | sed -n 's/.*\(CUDA_ERROR_[A-Z_]*\).*/\1/p; s/^RC=/RC=/p' | sort -u | tr '\n' ' ' | sed 's/ $//'; }
  check "S2 an MPS pod allocating 1 GiB past its limit gets CUDA's out-of-memory error" \
    "CUDA_ERROR_OUT_OF_MEMORY RC=2" "$(in_pod mps0 "cuda-workload --mib $((mib + 1024)) --seconds 0")"
  check "S2 an MPS pod that raises its own CUDA_MPS_PINNED_DEVICE_MEM_LIMIT still gets out-of-memory" \
    "CUDA_ERROR_OUT_OF_MEMORY RC=2" \
    "$(in_pod mps1 "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=$((total_mib))M cuda-workload --mib $((mib + 1024)) --seconds 0")"
  check "S2 the GPU's MPS server logged the refusals" 2 \
    "$(grep -c "out of memory on device 0: asked $((mib + 1024)) MiB" "$MPS_ROOT/$gpu/log/server.log" 2>/dev/null || true)"
  # Both pods up to their limits at once (less 4 GiB each: the GPU's reserved memory), one
  # asking for 80% of the GPU and given its 50% share, the other at 20%: 70% in all.
  in_pod mps0 "cuda-workload --mib $((mib - 4096)) --load 80 --seconds 20" >"$MPS_ROOT/mps0.out" &
  in_pod mps1 "cuda-workload --mib $((mib - 4096)) --load 20 --seconds 20" >"$MPS_ROOT/mps1.out" &
  mps_series() { curl -sf http://127.0.0.1:9101/metrics | grep "^$1{" | grep 'pod="mps0"' | awk '{ print $NF }' | head -1; }
  mps_busy() {
    awk -v m="$(mps_series gdp_gpu_framebuffer_used_bytes)" -v u="$(mps_series gdp_gpu_utilization_ratio)" \
      -v want=$((2 * (mib - 4096))) 'BEGIN { exit !(m >= want * 1048576 && u == 0.7) }'
  }
  if wait_until 15 mps_busy; then
    pass "S2 two MPS pods hold their limits at once; 80% asked at a 50% share plus 20% show as 0.7 on the GPU"
  else
    fail "S2 two MPS pods at their limits: expected >= $((2 * (mib - 4096))) MiB and 0.7 on /metrics, saw $(mps_series gdp_gpu_framebuffer_used_bytes) bytes and $(mps_series gdp_gpu_utilization_ratio)"
  fi
  wait
  check "S2 both MPS pods' workloads ran to the end" "RC=0 RC=0" "$(cat "$MPS_ROOT/mps0.out") $(cat "$MPS_ROOT/mps1.out")"
  # The daemons run in the chart's MPS DaemonSet (mps-agent): a client keeps its server,
  # and the server its limits, across a deleted plugin pod and a helm upgrade.
  mps_server() { CUDA_MPS_PIPE_DIRECTORY="$MPS_ROOT/$gpu/pipe" "$GPUROOT/usr/bin/nvidia-cuda-mps-control" <<<get_server_list 2>&1 | head -1; }
  client_alive() { kc -n "$TNS" exec mps0 -- sh -c 'kill -0 $(pidof cuda-workload) && echo alive' 2>/dev/null; }
  kc -n "$TNS" exec mps0 -- sh -c 'cuda-workload --mib 2048 --load 10 --seconds 300 >/tmp/long.log 2>&1 &' >/dev/null 2>&1
  server=$(mps_server)
  [ -n "$server" ] || fail "S2 no MPS server named by the GPU's control daemon"
  survives() { # WHAT: the checks after WHAT
    check "S2 after $1, the MPS client still runs and its server is the same" "alive $server" "$(client_alive) $(mps_server)"
    check "S2 after $1, the server still refuses an allocation past a pod's limit" \
      "CUDA_ERROR_OUT_OF_MEMORY RC=2" "$(in_pod mps1 "cuda-workload --mib $((mib + 1024)) --seconds 0")"
  }
  old=$(plugin_pod)
  kc -n "$NS" delete pod "$old" --wait=false >/dev/null
  if wait_until 90 plugin_replaced "$old" && wait_until 60 resource_is nvidia.com/gpu 16; then
    survives "the plugin pod's deletion"
  else
    fail "S2 the plugin pod was not replaced (16/16) within 150s after its deletion"
  fi
  # A plugin-only value changes: the plugin's pods roll, the -mps DaemonSet's do not.
  sharing_chart "$s2_config" "$s2_values
podAnnotations: {gdp-e2e/upgrade: \"1\"}"
  if wait_until 60 resource_is nvidia.com/gpu 16; then
    survives "a helm upgrade of the plugin"
  else
    fail "S2 after the helm upgrade: expected 16/16, saw $(capacity_of nvidia.com/gpu)/$(allocatable_of nvidia.com/gpu)"
  fi
else
  fail "S2 MPS pods: expected Running, saw $(pod_phase mps0) $(pod_phase mps1): $(kc -n "$TNS" describe pod mps0 | tail -5 | tr '\n' ' ')"
fi
delete_test_pods
stop_persistenced "$GPUROOT"

# --- S3: MIG mixed on a100-mig ---------------------------------------------------------
# A fresh driver root with the a100-mig profile: the plugin pod must not hold the old one.
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile a100-mig --library "$NVML_LIB" >/dev/null
sharing_chart "flags:
  migStrategy: mixed
health:
  probeInterval: 1s"
# The node's MIG devices per profile, as the simulator lays them out.
declare -A want_mig=()
while read -r p; do want_mig[$p]=$((${want_mig[$p]:-0} + 1)); done < <(gpusim show | awk '$1 ~ /^[0-9]+$/ { print $NF }' | tr ',' '\n' | grep -v '^-*$')
mig_counts_right() {
  local p
  for p in "${!want_mig[@]}"; do resource_is "nvidia.com/mig-$p" "${want_mig[$p]}" || return 1; done
}
t=$SECONDS
if ((${#want_mig[@]} >= 2)) && wait_until 90 mig_counts_right; then
  pass "S3 MIG mixed: $(for p in "${!want_mig[@]}"; do echo -n "nvidia.com/mig-$p=${want_mig[$p]} "; done)after $((SECONDS - t))s"
else
  fail "S3 MIG mixed: expected $(for p in "${!want_mig[@]}"; do echo -n "mig-$p=${want_mig[$p]} "; done)saw $(kc get node "$NODE" -o jsonpath='{.status.capacity}')"
fi
gpu_pod mig 1 nvidia.com/mig-1g.10gb
if wait_until 60 pod_logged mig READY; then
  nvd=$(pod_nvd mig)
  parent=$(pod_own_gpu mig)
  check "S3 the MIG pod's NVIDIA_VISIBLE_DEVICES is a MIG UUID" MIG "${nvd%%-*}"
  check "S3 the MIG pod's parent GPU node opens (ENXIO)" yes "$([ -n "$parent" ] && echo yes || echo "no: $(kc -n "$TNS" logs mig | grep '^dev')")"
  check "S3 nvidia-caps nodes in the MIG pod" 2 "$(wc -w <<<"$(pod_field mig CAPS)")"
  pr=$("$PODRESOURCES" 2>&1 | awk -v p="$TNS/mig/c" '$1 == p { print $2 "=" $3 }' || true)
  check "S3 pod-resources lists the MIG device" "nvidia.com/mig-1g.10gb=$nvd" "$pr"
else
  fail "S3 MIG pod: expected Running, saw $(pod_phase mig): $(kc -n "$TNS" describe pod mig | tail -5 | tr '\n' ' ')"
fi
delete_test_pods

# --- S4: MIG re-laid live --------------------------------------------------------------
cid_mig=$(kc -n "$NS" get pod "$(plugin_pod)" -o jsonpath='{.status.containerStatuses[0].containerID}')
# GPU 0 (3g.40gb + 2g.20gb + 1g.10gb x2) becomes 1g.10gb x7, GPU 3 (2g.20gb x3 + 1g.10gb)
# one 4g.40gb: 2g.20gb leaves the node, 4g.40gb arrives, 1g.10gb grows.
t=$SECONDS
gpusim mig --gpu 0 --layout 1g.10gb=7 >/dev/null || fail "S4 gpusim mig --gpu 0 failed"
gpusim mig --gpu 3 --layout 4g.40gb=1 >/dev/null || fail "S4 gpusim mig --gpu 3 failed"
declare -A want_mig=()
while read -r p; do want_mig[$p]=$((${want_mig[$p]:-0} + 1)); done < <(gpusim show | awk '$1 ~ /^[0-9]+$/ { print $NF }' | tr ',' '\n' | grep -v '^-*$')
# A resource that leaves: its capacity drops to 0 (or the kubelet drops the resource).
none_of() { local c a; c=$(capacity_of "$1"); a=$(allocatable_of "$1"); [ "${c:-0}" = 0 ] && [ "${a:-0}" = 0 ]; }
relaid() { mig_counts_right && none_of nvidia.com/mig-2g.20gb; }
if [ "${want_mig[4g.40gb]:-0}" = 1 ] && [ -z "${want_mig[2g.20gb]:-}" ] && wait_until 60 relaid; then
  pass "S4 MIG re-laid live: $(for p in "${!want_mig[@]}"; do echo -n "nvidia.com/mig-$p=${want_mig[$p]} "; done)and mig-2g.20gb=0 after $((SECONDS - t))s"
else
  fail "S4 MIG re-laid: expected $(for p in "${!want_mig[@]}"; do echo -n "mig-$p=${want_mig[$p]} "; done)mig-2g.20gb=0, saw $(kc get node "$NODE" -o jsonpath='{.status.capacity}')"
  kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
fi
check "S4 the plugin container is the same after the re-layout" "$cid_mig" \
  "$(kc -n "$NS" get pod "$(plugin_pod)" -o jsonpath='{.status.containerStatuses[0].containerID}')"
