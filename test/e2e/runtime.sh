# The NVIDIA container runtime on the real node (docs/e2e.md), sourced by test/e2e/run.sh
# after dropin.sh (it defines pass/fail/check and sharing_chart, the cluster is up). NVIDIA's
# nvidia-container-runtime, built from the toolkit's Go module (hack/nvidia-toolkit.sh), is
# containerd's handler `nvidia` in its jit-cdi mode and `nvidia-cdi` in its cdi mode, as on
# GPU Operator clusters, with RuntimeClasses of those names; the plugin runs with NVIDIA's
# chart's defaults (envvar, no DeviceSpecs), so the runtime alone gives each pod its GPUs and
# the driver, from NVIDIA_VISIBLE_DEVICES:
#   R1 jit-cdi: nvidia-smi -L in a 1-GPU pod of the workload image (no driver file in it)
#      lists exactly its GPU, in a 2-GPU pod exactly its two; the CUDA sample runs there and
#      exits 0; a pod without a GPU request that asks for the driver alone
#      (NVIDIA_VISIBLE_DEVICES=none) gets nvidia-smi's usual "No devices were found"; one
#      that asks for nothing gets nothing of the driver.
#   R2 cdi: the same pods over the spec `nvidia-ctk cdi generate` wrote into /var/run/cdi.
# shellcheck shell=bash

kc apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia}
handler: nvidia
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia-cdi}
handler: nvidia-cdi
EOF
"$GPUROOT/usr/bin/nvidia-persistenced" 8>&- || fail "R the nvidia-persistenced stand-in did not start"
# NVIDIA's spec for the cdi mode, in place of ours (one spec per device name).
rm -f /var/run/cdi/gpu-device-plugin.*
"$TOOLKIT_BIN/nvidia-ctk" cdi generate --driver-root="$GPUROOT" \
  --nvidia-cdi-hook-path="$TOOLKIT_BIN/nvidia-cdi-hook" --output=/var/run/cdi/nvidia.yaml >/dev/null 2>&1 ||
  fail "R nvidia-ctk cdi generate over $GPUROOT failed"
sharing_chart "flags:
  plugin:
    passDeviceSpecs: false
health:
  probeInterval: 1s"
wait_until 90 resource_is nvidia.com/gpu 8 ||
  fail "R expected nvidia.com/gpu 8/8 within 90s, saw $(capacity_of nvidia.com/gpu)/$(allocatable_of nvidia.com/gpu)"

# runtime_pods RUNTIME_CLASS MODE: the pods of one mode and their checks.
runtime_pods() {
  local rc=$1 mode=$2 p want saw
  local smi='nvidia-smi -L; echo "RC=$?"; cuda-workload --mib 1024 --seconds 1 >/dev/null; echo "WRC=$?"'
  GPU_POD_IMAGE=gpu-workload GPU_POD_RUNTIME_CLASS=$rc GPU_POD_RUN=$smi gpu_pod "one-$rc" 1
  GPU_POD_IMAGE=gpu-workload GPU_POD_RUNTIME_CLASS=$rc GPU_POD_RUN=$smi gpu_pod "two-$rc" 2
  GPU_POD_IMAGE=gpu-workload GPU_POD_RUNTIME_CLASS=$rc GPU_POD_RUN='nvidia-smi -L; echo "RC=$?"' \
    gpu_pod "nothing-$rc" 0
  local pods="one-$rc two-$rc nothing-$rc"
  if [ "$mode" = jit-cdi ]; then
    GPU_POD_IMAGE=gpu-workload GPU_POD_RUNTIME_CLASS=$rc GPU_POD_RUN='nvidia-smi -L; echo "RC=$?"' \
      GPU_POD_ENV='[{name: NVIDIA_VISIBLE_DEVICES, value: none}]' gpu_pod "none-$rc" 0
    pods+=" none-$rc"
  fi
  runtime_ready() { local p; for p in $pods; do pod_logged "$p" READY || return 1; done; }
  if ! wait_until 90 runtime_ready; then
    fail "R $mode pods: expected Running, saw $(for p in $pods; do echo -n "$p=$(pod_phase "$p") "; done)$(kc -n "$TNS" describe pod "one-$rc" | grep -iE 'error|fail' | tail -2 | tr '\n' ' ')"
    delete_test_pods
    return
  fi
  local listing
  listing=$("$PODRESOURCES" 2>&1 || true)
  for p in "one-$rc" "two-$rc"; do
    # The pod's GPUs (the kubelet's pod-resources; in the container the runtime's spec has
    # set NVIDIA_VISIBLE_DEVICES=void), against what nvidia-smi lists; the sample's exit.
    want=$(awk -v p="$TNS/$p/c" '$1 == p { print $3 }' <<<"$listing" | tr ',' '\n' | sort | tr '\n' ' ')
    saw=$(kc -n "$TNS" logs "$p" 2>/dev/null | sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[^)]*\))$/\1/p' | sort | tr '\n' ' ')
    check "R $mode: nvidia-smi -L in the $p pod lists exactly its GPUs; the CUDA sample exits 0" \
      "RC=0 ${want:-none}WRC=0" "RC=$(pod_field "$p" RC) ${saw:-none}WRC=$(pod_field "$p" WRC)"
  done
  check "R $mode: a pod without a GPU request gets nothing of the driver" "127" "$(pod_field "nothing-$rc" RC)"
  if [ "$mode" = jit-cdi ]; then
    check "R $mode: a pod without a GPU that asks for the driver alone gets nvidia-smi's usual message" \
      "No devices were found RC=6" \
      "$(kc -n "$TNS" logs "none-$rc" 2>/dev/null | grep -x 'No devices were found' | head -1) RC=$(pod_field "none-$rc" RC)"
  fi
  delete_test_pods
}
runtime_pods nvidia jit-cdi
runtime_pods nvidia-cdi cdi

rm -f /var/run/cdi/nvidia.yaml
kc delete runtimeclass nvidia nvidia-cdi >/dev/null 2>&1 || true
stop_persistenced "$GPUROOT"
