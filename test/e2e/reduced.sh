# The reduced scenario set, run on every cell of the compatibility matrix (hack/e2e-matrix.sh):
# sourced after test/e2e/lib.sh, with pass/fail defined, the cluster up and the chart
# installed over a simulated dgx-h100 at $GPUROOT (8 GPUs). Defines reduced_set only.
#
#   reduced_set CELL   runs, naming CELL in every line:
#     1 registration and capacity: capacity and allocatable nvidia.com/gpu = 8
#     2 isolation in the pod: a 1-GPU pod sees one GPU, its node opens (ENXIO), the others
#       absent or EPERM
#     3 pod-resources attribution: the pod's GPU series on /metrics carry pod="<its name>"
#     4 XID 79 on another GPU: allocatable 7; reset (off the bus and back): 8 again
#     5 kubelet restart: registers again, 8/8, the pod keeps its container
#     6 time-slicing, 2 replicas: 16/16, a replica pod runs on one GPU; back to 8
#     7 CDI through the runtime (deviceListStrategy cdi-cri, no device specs of the plugin's
#       own): nvidia-smi -L in a pod of an image with no driver file lists exactly the GPU
#       pod-resources gives it
# shellcheck shell=bash

reduced_set() {
  local cell=$1 nvd own others cid victim
  rs_pass() { pass "[$cell] $*"; }
  rs_fail() { fail "[$cell] $*"; }

  # The plugin ready and registered: one pod on the node, ready, and 8/8.
  plugin_ready() { plugin_replaced none; }
  if wait_until 60 plugin_ready && wait_until 60 gpus_are 8; then
    rs_pass "1 registration: capacity and allocatable nvidia.com/gpu = 8"
  else
    rs_fail "1 registration: expected 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
    return
  fi

  delete_test_pods
  gpu_pod iso 1
  if wait_until 60 pod_logged iso READY; then
    nvd=$(pod_nvd iso)
    own=$(kc -n "$TNS" logs iso | grep -E '^dev[0-7]: .*No such device or address' | sed 's/^dev\([0-7]\):.*/\1/' || true)
    others=$(kc -n "$TNS" logs iso | grep -E '^dev[0-7]: ' | grep -vE 'No such device or address|absent|Operation not permitted' || true)
    if [ "$(wc -w <<<"$own")" = 1 ] && [ "$(uuid_of "$own")" = "$nvd" ] && [ -z "$others" ]; then
      rs_pass "2 isolation: the pod sees its GPU $own ($nvd) alone"
    else
      rs_fail "2 isolation: expected one ENXIO node, its GPU's, and no other open node; saw NVD=$nvd ENXIO=[$own] others=[$others]"
    fi
  else
    rs_fail "2 isolation: expected the 1-GPU pod Running, saw $(pod_phase iso): $(kc -n "$TNS" get pod iso -o jsonpath='{.status.reason}: {.status.message}' 2>&1)"
    return
  fi

  own_series() { curl -sf -m 2 http://127.0.0.1:9101/metrics | grep '^gdp_gpu_temperature_celsius{' | grep "uuid=\"$nvd\"" | grep 'pod="iso"'; }
  if wait_until 30 own_series >/dev/null; then
    rs_pass "3 pod-resources attribution: the pod's GPU series on /metrics carry pod=\"iso\""
  else
    rs_fail "3 attribution: expected a series of GPU $nvd with pod=\"iso\", saw $(curl -sf http://127.0.0.1:9101/metrics | grep -c 'pod="' || true) series with a pod"
  fi

  victim=$(((own + 1) % 8))
  gpusim xid --gpu "$victim" --xid 79 >/dev/null
  if wait_until 15 alloc_is 7; then
    rs_pass "4 XID 79 on GPU $victim: allocatable 7"
  else
    rs_fail "4 XID 79 on GPU $victim: expected allocatable 7, saw $(node_gpus allocatable)"
  fi
  # A reset takes the GPU off the bus and back (how drivers without NVML's recovery-action
  # field show it; docs/health.md).
  # The reset only after the plugin saw the GPU gone, as it would a real one leave the bus.
  gpusim lose --gpu "$victim" >/dev/null
  seen_lost() {
    kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null | grep 'unhealthy device is now lost' |
      grep "$(uuid_of "$victim")" >/dev/null
  }
  wait_until 15 seen_lost || rs_fail "4 gpusim lose: expected the plugin to log GPU $victim lost"
  gpusim reset --gpu "$victim" >/dev/null
  if wait_until 60 alloc_is 8; then
    rs_pass "4 after the reset: allocatable 8"
  else
    rs_fail "4 after the reset: expected allocatable 8, saw $(node_gpus allocatable)"
  fi

  cid=$(kc -n "$TNS" get pod iso -o jsonpath='{.status.containerStatuses[0].containerID}')
  hack/local-cluster.sh restart-kubelet >/dev/null
  if wait_until 60 gpus_are 8 && [ "$(kc -n "$TNS" get pod iso -o jsonpath='{.status.containerStatuses[0].containerID}')" = "$cid" ] &&
    pod_running iso; then
    rs_pass "5 kubelet restart: 8/8 again and the pod keeps its container"
  else
    rs_fail "5 kubelet restart: expected 8/8 and pod iso's container $cid running, saw $(node_gpus capacity)/$(node_gpus allocatable), $(pod_phase iso)"
  fi
  delete_test_pods

  sharing_chart "sharing:
  timeSlicing:
    resources:
      - name: nvidia.com/gpu
        replicas: 2
health:
  recoveryQuietPeriod: 10s
  probeInterval: 1s"
  gpu_pod replica 1
  if wait_until 60 gpus_are 16 && wait_until 60 pod_logged replica READY &&
    [ "$(tr ',' '\n' <<<"$(pod_nvd replica)" | grep -c .)" = 1 ]; then
    rs_pass "6 time-slicing x2: 16/16, a replica pod runs on one GPU"
  else
    rs_fail "6 time-slicing x2: expected 16/16 and a running replica pod, saw $(node_gpus capacity)/$(node_gpus allocatable), $(pod_phase replica)"
  fi
  delete_test_pods

  # The driver's nvidia-persistenced (the simulator's stand-in) runs on the host, so the spec
  # the plugin writes mounts its socket, through which the simulated driver reaches the pod.
  # (8>&-: the daemon must not hold the real-node lock of the run.)
  "$GPUROOT/usr/bin/nvidia-persistenced" 8>&- || rs_fail "7 CDI: the nvidia-persistenced stand-in did not start"
  sharing_chart "flags:
  plugin:
    deviceListStrategy: cdi-cri
    passDeviceSpecs: false
health:
  recoveryQuietPeriod: 10s
  probeInterval: 1s" "cdi: {enabled: true, hostPath: /var/run/cdi}"
  wait_until 60 gpus_are 8 || rs_fail "7 CDI: expected 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  GPU_POD_IMAGE=gpu-workload GPU_POD_RUN='nvidia-smi -L; echo "RC=$?"' gpu_pod smi 1
  local want saw
  if wait_until 60 pod_logged smi READY; then
    want=$("$PODRESOURCES" "${GDP_KUBELET_ROOT:-/var/lib/kubelet}/pod-resources/kubelet.sock" 2>&1 |
      awk -v p="$TNS/smi/c" '$1 == p { print $3 }' || true)
    saw=$(kc -n "$TNS" logs smi 2>/dev/null | sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[^)]*\))$/\1/p' | tr '\n' ' ' | sed 's/ $//' || true)
    if [ -n "$want" ] && [ "$saw" = "$want" ] && pod_logged smi RC=0; then
      rs_pass "7 CDI: nvidia-smi -L in a pod of an image with no driver file lists its GPU $want alone"
    else
      rs_fail "7 CDI: expected nvidia-smi -L to list exactly pod-resources' GPU [$want], saw [$saw]: $(kc -n "$TNS" logs smi 2>&1 | tail -3 | tr '\n' ' ')"
    fi
  else
    rs_fail "7 CDI: expected the pod Running, saw $(pod_phase smi): $(kc -n "$TNS" get pod smi -o jsonpath='{.status.containerStatuses[0].state}' 2>&1)"
  fi
  delete_test_pods
  stop_persistenced "$GPUROOT"
  sharing_chart "health:
  recoveryQuietPeriod: 10s
  probeInterval: 1s"
  wait_until 60 gpus_are 8 || rs_fail "7 back to the default strategy: expected 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
}
