# The drop-in scenarios (docs/migrating-from-nvidia.md) against the real node, sourced
# by test/e2e/run.sh after sharing.sh (it defines pass/fail/check, the cluster is up):
#   D1 the plugin started with a config file in NVIDIA's format (every field of the dump
#      NVIDIA's plugin prints at start) and NVIDIA's environment variables serves the
#      node, and logs the fields it does not act on.
#   D2 a resources.gpus pattern (flags.plugin.useResourcePatterns) advertises the H100s
#      as nvidia.com/h100, and a pod asking for nvidia.com/h100 runs with its GPU.
#   D3 with GDRCOPY_ENABLED (NVIDIA's variable) that pod sees GDRCopy's /dev/gdrdrv.
# shellcheck shell=bash

# A fresh dgx-h100 root carrying GDRCopy's node; the plugin must not hold the old root.
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile dgx-h100 --extras gdrcopy --library "$NVML_LIB" >/dev/null
{
  # The release's values for node $NODE, with NVIDIA's variables and this config.
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 |
    sed '/^config: |$/,/^    probeInterval: 1s$/d' |
    sed '/KUBERNETES_SERVICE_PORT/a\  - {name: DP_DISABLE_HEALTHCHECKS, value: "109"}\n  - {name: NVIDIA_CTK_PATH, value: /usr/bin/nvidia-ctk}\n  - {name: DEVICE_ID_STRATEGY, value: uuid}\n  - {name: GDRCOPY_ENABLED, value: "true"}'
  cat <<EOF
config: |
  version: v1
  flags:
    migStrategy: none
    failOnInitError: true
    mpsRoot: /run/nvidia/mps
    nvidiaDriverRoot: $GPUROOT
    nvidiaDevRoot: $GPUROOT
    gdrcopyEnabled: false
    gdsEnabled: false
    mofedEnabled: false
    useNodeFeatureAPI: null
    deviceDiscoveryStrategy: auto
    plugin:
      passDeviceSpecs: true
      deviceListStrategy: [envvar]
      deviceIDStrategy: uuid
      cdiAnnotationPrefix: cdi.k8s.io/
      nvidiaCTKPath: /usr/bin/nvidia-ctk
      containerDriverRoot: /driver-root
      sharedDevicesAllocationPolicy: distributed
      useResourcePatterns: true
    gfd:
      oneshot: false
      noTimestamp: false
      sleepInterval: 1m0s
      outputFile: /etc/kubernetes/node-feature-discovery/features.d/gfd
      machineTypeFile: /sys/class/dmi/id/product_name
  resources:
    gpus:
    - pattern: "*H100*"
      name: h100
  sharing:
    timeSlicing: {}
  imex: {}
  health:
    probeInterval: 1s
EOF
} >"$values"
helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
t=$SECONDS
if wait_until 90 resource_is nvidia.com/h100 8; then
  pass "D1/D2 NVIDIA's config format and variables: capacity and allocatable nvidia.com/h100 = 8 after $((SECONDS - t))s"
else
  fail "D1/D2 expected nvidia.com/h100 8/8 within 90s, saw $(capacity_of nvidia.com/h100)/$(allocatable_of nvidia.com/h100)"
  kc -n "$NS" logs "$(plugin_pod)" --tail 20 2>&1 | sed 's/^/  plugin: /' || true
fi
log=$(kc -n "$NS" logs "$(plugin_pod)" 2>&1 || true)
check "D1 the fields it does not act on are logged" yes \
  "$(grep -q 'config field accepted but not acted on field=flags.plugin.nvidiaCTKPath' <<<"$log" && grep -q 'field=flags.gfd.outputFile' <<<"$log" && echo yes || echo "no: $(grep -c 'not acted on' <<<"$log") lines")"
check "D1 no config error" 0 "$(grep -c 'invalid config' <<<"$log" || true)"
gpu_pod h100 1 nvidia.com/h100
if wait_until 60 pod_logged h100 READY; then
  own=$(pod_own_gpu h100)
  check "D2 the nvidia.com/h100 pod's one GPU is the one it was given" "$(pod_nvd h100)" \
    "$([ -n "$own" ] && uuid_of "$own")"
  check "D3 the pod sees GDRCopy's /dev/gdrdrv" yes "$(pod_field h100 GDRDRV)"
else
  fail "D2 nvidia.com/h100 pod: expected Running, saw $(pod_phase h100): $(kc -n "$TNS" describe pod h100 | tail -5 | tr '\n' ' ')"
fi
delete_test_pods
