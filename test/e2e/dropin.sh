# The drop-in scenarios (docs/migrating-from-nvidia.md) against the real node, sourced
# by test/e2e/run.sh after sharing.sh (it defines pass/fail/check, the cluster is up):
#   D0 the swap: pods hold GPUs under this plugin with its own config; the plugin is
#      started again the way a cluster migrating from NVIDIA's starts it (NVIDIA's config
#      format and variables, DEVICE_ID_STRATEGY=index), the kubelet restarts: the pods keep
#      running (its checkpoint's device IDs are still advertised), and a new pod gets a GPU
#      none of them holds, as an index.
#   D1 the plugin started with a config file in NVIDIA's format (every field of the dump
#      NVIDIA's plugin prints at start) and NVIDIA's environment variables serves the
#      node, and logs the fields it does not act on.
#   D2 a resources.gpus pattern (flags.plugin.useResourcePatterns) advertises the H100s
#      as nvidia.com/h100, and a pod asking for nvidia.com/h100 runs with its GPU.
#   D3 with GDRCOPY_ENABLED (NVIDIA's variable) that pod sees GDRCopy's /dev/gdrdrv.
#   D4 the swap of D0 on a node of whole and MIG GPUs, under a whole-GPU pod, a time-sliced
#      pod and a MIG pod (migStrategy mixed, one GPU time-sliced): every pod keeps running
#      through the swap and a kubelet restart, and new pods of each resource get devices
#      no running pod holds.
#   D5 NVIDIA's chart's container contract with only the image changed: a DaemonSet written
#      from what NVIDIA's chart runs (the command nvidia-device-plugin with its variables and
#      mounts; config-manager as init container and sidecar over a ConfigMap of named configs,
#      shareProcessNamespace) serves the node with this image; a node label picks a
#      time-slicing config live, a pod runs on a replica, and removing the label goes back.
# shellcheck shell=bash

# A fresh dgx-h100 root carrying GDRCopy's node; the plugin must not hold the old root.
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile dgx-h100 --extras gdrcopy --library "$NVML_LIB" >/dev/null
# nvidia_values ID_STRATEGY PATTERNS [MIG_STRATEGY [TIME_SLICING]]: the release's values for
# node $NODE, as a cluster migrating from NVIDIA's plugin has them: a config file in
# NVIDIA's format (every field of the dump NVIDIA's plugin prints at start) and NVIDIA's
# variables (DEVICE_ID_STRATEGY ID_STRATEGY), with flags.plugin.useResourcePatterns
# PATTERNS, flags.migStrategy MIG_STRATEGY (default none) and TIME_SLICING (YAML flow) as
# sharing.timeSlicing (default {}).
nvidia_values() {
local time_slicing=${4:-'{}'}
{
  # The release's values for node $NODE, with NVIDIA's variables and this config.
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 |
    sed '/^config: |$/,/^    probeInterval: 1s$/d' |
    sed "/KUBERNETES_SERVICE_PORT/a\\  - {name: DP_DISABLE_HEALTHCHECKS, value: \"109\"}\n  - {name: NVIDIA_CTK_PATH, value: /usr/bin/nvidia-ctk}\n  - {name: DEVICE_ID_STRATEGY, value: $1}\n  - {name: GDRCOPY_ENABLED, value: \"true\"}"
  cat <<EOF
config: |
  version: v1
  flags:
    migStrategy: ${3:-none}
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
      useResourcePatterns: $2
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
    timeSlicing: $time_slicing
  imex: {}
  health:
    probeInterval: 1s
EOF
}
}

# --- D0: the swap, with pods running ---------------------------------------------------
# Our plugin, our config: two pods hold a GPU each.
e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 >"$values"
helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
wait_until 90 resource_is nvidia.com/gpu 8 || fail "D0 our plugin: expected nvidia.com/gpu 8/8, saw $(capacity_of nvidia.com/gpu)"
gpu_pod w0 1
gpu_pod w1 1
held_ok() { pod_logged w0 READY && pod_logged w1 READY; }
if wait_until 60 held_ok; then
  held="$(pod_nvd w0) $(pod_nvd w1)"
  containers() { kc -n "$TNS" get pods w0 w1 -o jsonpath='{range .items[*]}{.status.containerStatuses[0].containerID} {end}'; }
  before=$(containers)
  # The swap: the plugin as a migrating cluster starts it (NVIDIA's format and variables,
  # DEVICE_ID_STRATEGY=index), then a kubelet restart, which re-admits the running pods
  # from its checkpoint only if the device IDs are the same.
  nvidia_values index false >"$values"
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
  kc -n "$NS" delete pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=$NODE" --wait=true >/dev/null 2>&1 || true
  t=$SECONDS
  swapped() {
    local log
    log=$(kc -n "$NS" logs "$(plugin_pod)" 2>/dev/null || true)
    grep -q 'registered with the kubelet' <<<"$log" && grep -q 'not acted on' <<<"$log"
  }
  wait_until 90 swapped || fail "D0 the plugin started the NVIDIA way did not register within 90s"
  hack/local-cluster.sh restart-kubelet >/dev/null 2>&1 || fail "D0 hack/local-cluster.sh restart-kubelet failed"
  if wait_until 60 resource_is nvidia.com/gpu 8; then
    pass "D0 swapped, then the kubelet restarted: nvidia.com/gpu 8/8 after $((SECONDS - t))s"
  else
    fail "D0 after the swap and the kubelet restart: expected 8/8, saw $(capacity_of nvidia.com/gpu)/$(allocatable_of nvidia.com/gpu)"
  fi
  same() { [ "$(containers)" = "$before" ]; }
  if wait_until 15 same; then
    pass "D0 the pods holding GPUs kept running through the swap and the kubelet restart"
  else
    fail "D0 containers: expected $before, saw $(containers) ($(pod_phase w0) $(pod_phase w1))"
  fi
  gpu_pod w2 1
  if wait_until 60 pod_logged w2 READY; then
    own=$(pod_own_gpu w2)
    got=$([ -n "$own" ] && uuid_of "$own")
    # gpu=<x>: an empty answer on both sides cannot pass.
    check "D0 the index strategy gives the new pod an index" "gpu=$own" "gpu=$(pod_nvd w2)"
    [ -n "$own" ] || fail "D0 the new pod has no GPU node of its own"
    check "D0 the new pod's GPU is none of the held ones" yes \
      "$([ -n "$got" ] && ! grep -qw -- "$got" <<<"$held" && echo yes || echo "no: $got among $held")"
  else
    fail "D0 a new pod after the swap: expected Running, saw $(pod_phase w2)"
  fi
else
  fail "D0 pods under our plugin: expected Running, saw $(pod_phase w0) $(pod_phase w1)"
fi
delete_test_pods

# --- D1-D3 -------------------------------------------------------------------------------
# The running plugin reloads the new config file before the DaemonSet replaces it (the
# variables changed), so the resource counts only once the new pod alone serves the node.
old_pod=$(plugin_pod)
nvidia_values uuid true >"$values"
helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
t=$SECONDS
d1_served() { plugin_replaced "$old_pod" && resource_is nvidia.com/h100 8; }
if wait_until 90 d1_served; then
  pass "D1/D2 NVIDIA's config format and variables: capacity and allocatable nvidia.com/h100 = 8 after $((SECONDS - t))s"
else
  fail "D1/D2 expected nvidia.com/h100 8/8 within 90s, saw $(capacity_of nvidia.com/h100)/$(allocatable_of nvidia.com/h100)"
  kc -n "$NS" logs "$(plugin_pod)" --tail 20 2>&1 | sed 's/^/  plugin: /' || true
fi
log=$(kc -n "$NS" logs "$(plugin_pod)" 2>&1 || true)
check "D1 the fields it does not act on are logged" yes \
  "$(grep -q 'config field accepted but not acted on field=flags.gfd.outputFile' <<<"$log" && grep -q 'field=flags.gfd.machineTypeFile' <<<"$log" && echo yes || echo "no: $(grep -c 'not acted on' <<<"$log") lines")"
check "D1 no config error" 0 "$(grep -c 'invalid config' <<<"$log" || true)"
gpu_pod h100 1 nvidia.com/h100
if wait_until 60 pod_logged h100 READY; then
  own=$(pod_own_gpu h100)
  check "D2 the nvidia.com/h100 pod's one GPU is the one it was given" "gpu=$(pod_nvd h100)" \
    "gpu=$([ -n "$own" ] && uuid_of "$own")"
  [ -n "$own" ] || fail "D2 the nvidia.com/h100 pod has no GPU node of its own"
  check "D3 the pod sees GDRCopy's /dev/gdrdrv" yes "$(pod_field h100 GDRDRV)"
else
  fail "D2 nvidia.com/h100 pod: expected Running, saw $(pod_phase h100): $(kc -n "$TNS" describe pod h100 | tail -5 | tr '\n' ' ')"
fi
delete_test_pods

# --- D4: the swap under whole-GPU, time-sliced and MIG pods -------------------------------
# The mixed profile: GPUs 0 and 2 in MIG mode, 1 and 3 whole; GPU 3 is time-sliced in two.
# GDRCopy's node too: nvidia_values sets GDRCOPY_ENABLED.
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile mixed --extras gdrcopy --library "$NVML_LIB" >/dev/null
ts='{resources: [{name: nvidia.com/gpu, rename: nvidia.com/gpu.shared, replicas: 2, devices: ["3"]}]}'
sharing_chart "flags:
  migStrategy: mixed
sharing:
  timeSlicing: $ts
health:
  probeInterval: 1s"
mig1=$(gpusim show | awk '$1 ~ /^[0-9]+$/ { print $NF }' | tr ',' '\n' | grep -c '^1g\.10gb$' || true)
d4_served() { resource_is nvidia.com/gpu 1 && resource_is nvidia.com/gpu.shared 2 && resource_is nvidia.com/mig-1g.10gb "$mig1"; }
# All device IDs the kubelet has handed out, one per line with its pod: none twice.
handed_out() { "$PODRESOURCES" 2>/dev/null | awk '$2 ~ /^nvidia\.com\// { n = split($3, ids, ","); for (i = 1; i <= n; i++) print ids[i], $1 }'; }
if wait_until 90 d4_served; then
  gpu_pod m0 1 nvidia.com/gpu
  gpu_pod m1 1 nvidia.com/gpu.shared
  gpu_pod m2 1 nvidia.com/mig-1g.10gb
  d4_held() { pod_logged m0 READY && pod_logged m1 READY && pod_logged m2 READY; }
  if wait_until 60 d4_held; then
    d4_containers() { kc -n "$TNS" get pods m0 m1 m2 -o jsonpath='{range .items[*]}{.status.containerStatuses[0].containerID} {end}'; }
    before=$(d4_containers)
    old_pod=$(plugin_pod)
    nvidia_values index false mixed "$ts" >"$values"
    helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
    kc -n "$NS" delete pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=$NODE" --wait=true >/dev/null 2>&1 || true
    t=$SECONDS
    if ! wait_until 90 plugin_replaced "$old_pod"; then
      fail "D4 the plugin started the NVIDIA way was not ready within 90s"
      kc -n "$NS" logs "$(plugin_pod)" --tail 15 2>&1 | sed 's/^/  plugin: /' || true
    fi
    hack/local-cluster.sh restart-kubelet >/dev/null 2>&1 || fail "D4 hack/local-cluster.sh restart-kubelet failed"
    if wait_until 60 d4_served; then
      pass "D4 swapped under whole, time-sliced and MIG pods, then the kubelet restarted: gpu 1, gpu.shared 2, mig-1g.10gb $mig1 after $((SECONDS - t))s"
    else
      fail "D4 after the swap and the kubelet restart: saw $(kc get node "$NODE" -o jsonpath='{.status.allocatable}')"
    fi
    d4_same() { [ "$(d4_containers)" = "$before" ]; }
    if wait_until 15 d4_same; then
      pass "D4 the whole-GPU, time-sliced and MIG pods kept running through the swap and the kubelet restart"
    else
      fail "D4 containers: expected $before, saw $(d4_containers) ($(pod_phase m0) $(pod_phase m1) $(pod_phase m2))"
    fi
    # New pods of the resources with a device left: the other replica, the other MIG 1g.10gb.
    gpu_pod n1 1 nvidia.com/gpu.shared
    gpu_pod n2 1 nvidia.com/mig-1g.10gb
    d4_new() { pod_logged n1 READY && pod_logged n2 READY; }
    if wait_until 60 d4_new; then
      ids=$(handed_out)
      check "D4 devices handed out to the five pods" 5 "$(wc -l <<<"$ids")"
      check "D4 devices handed out twice" "" "$(awk '{ print $1 }' <<<"$ids" | sort | uniq -d | tr '\n' ' ')"
    else
      fail "D4 new pods after the swap: expected Running, saw $(pod_phase n1) $(pod_phase n2): $(kc -n "$TNS" describe pod n1 n2 | grep -i warn | tail -3 | tr '\n' ' ')"
    fi
  else
    fail "D4 pods under our plugin: expected Running, saw $(pod_phase m0) $(pod_phase m1) $(pod_phase m2)"
  fi
else
  fail "D4 our plugin on the mixed node: saw $(kc get node "$NODE" -o jsonpath='{.status.allocatable}')"
fi
delete_test_pods

# --- D5: NVIDIA's chart's container contract, only the image changed ----------------------
# What NVIDIA's chart (v0.20) deploys, written here from its contract (it cannot be fetched
# on this machine): the command nvidia-device-plugin with its variables, the driver root at
# /driver-root, config-manager as init container and sidecar with shareProcessNamespace.
# Three lines are this cluster's, not the chart's: hostNetwork and the API server's address
# (this cluster's pods reach only loopback) and the simulator's writable state folder.
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile dgx-h100 --library "$NVML_LIB" >/dev/null
contract=$(mktemp)
cm_env() { # ONESHOT SEND_SIGNAL
  cat <<EOF
        env:
        - {name: ONESHOT, value: "$1"}
        - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
        - {name: NODE_LABEL, value: nvidia.com/device-plugin.config}
        - {name: CONFIG_FILE_SRCDIR, value: /available-configs}
        - {name: CONFIG_FILE_DST, value: /config/config.yaml}
        - {name: DEFAULT_CONFIG, value: default}
        - {name: FALLBACK_STRATEGIES, value: "named,single"}
        - {name: SEND_SIGNAL, value: "$2"}
        - {name: SIGNAL, value: "1"}
        - {name: PROCESS_TO_SIGNAL, value: nvidia-device-plugin}
        - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
        - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
        volumeMounts:
        - {name: available-configs, mountPath: /available-configs}
        - {name: config, mountPath: /config}
EOF
}
{
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: nvidia-contract, namespace: $NS}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: gdp-e2e-nvidia-contract}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get, list, watch, patch]}
- {apiGroups: [""], resources: [events], verbs: [create, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: gdp-e2e-nvidia-contract}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gdp-e2e-nvidia-contract}
subjects: [{kind: ServiceAccount, name: nvidia-contract, namespace: $NS}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: nvidia-contract-configs, namespace: $NS}
data:
  default: |
    version: v1
    flags:
      migStrategy: none
  ts2: |
    version: v1
    flags:
      migStrategy: none
    sharing:
      timeSlicing:
        resources:
        - name: nvidia.com/gpu
          replicas: 2
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: nvidia-contract, namespace: $NS}
spec:
  selector: {matchLabels: {app: nvidia-contract}}
  template:
    metadata: {labels: {app: nvidia-contract}}
    spec:
      serviceAccountName: nvidia-contract
      hostNetwork: true
      shareProcessNamespace: true
      priorityClassName: system-node-critical
      nodeSelector: {kubernetes.io/hostname: $NODE}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      initContainers:
      - name: nvidia-device-plugin-init
        image: localhost/gdp/gpu-device-plugin:e2e
        imagePullPolicy: Never
        command: [config-manager]
EOF
  cm_env true false
  cat <<EOF
      containers:
      - name: nvidia-device-plugin-sidecar
        image: localhost/gdp/gpu-device-plugin:e2e
        imagePullPolicy: Never
        command: [config-manager]
EOF
  cm_env false true
  cat <<EOF
      - name: nvidia-device-plugin-ctr
        image: localhost/gdp/gpu-device-plugin:e2e
        imagePullPolicy: Never
        command: [nvidia-device-plugin]
        env:
        - {name: MPS_ROOT, value: /run/nvidia/mps}
        - {name: MIG_STRATEGY, value: none}
        - {name: FAIL_ON_INIT_ERROR, value: "true"}
        - {name: PASS_DEVICE_SPECS, value: "true"}
        - {name: DEVICE_LIST_STRATEGY, value: envvar}
        - {name: DEVICE_ID_STRATEGY, value: uuid}
        - {name: NVIDIA_DRIVER_ROOT, value: $GPUROOT}
        - {name: NVIDIA_DEV_ROOT, value: $GPUROOT}
        - {name: NVIDIA_CDI_HOOK_PATH, value: /usr/bin/nvidia-cdi-hook}
        - {name: CDI_FEATURE_FLAGS, value: ""}
        - {name: GDRCOPY_ENABLED, value: "false"}
        - {name: GDS_ENABLED, value: "false"}
        - {name: MOFED_ENABLED, value: "false"}
        - {name: CONFIG_FILE, value: /config/config.yaml}
        - {name: NVIDIA_MIG_MONITOR_DEVICES, value: all}
        - {name: DEVICE_DISCOVERY_STRATEGY, value: auto}
        - {name: NVIDIA_VISIBLE_DEVICES, value: all}
        - {name: NVIDIA_DRIVER_CAPABILITIES, value: "compute,utility"}
        - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
        - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        volumeMounts:
        - {name: device-plugin, mountPath: /var/lib/kubelet/device-plugins}
        - {name: driver-root, mountPath: /driver-root, readOnly: true}
        - {name: gpusim-state, mountPath: /driver-root/run/gpusim}
        - {name: mps-shm, mountPath: /dev/shm}
        - {name: mps-root, mountPath: /mps}
        - {name: cdi-root, mountPath: /var/run/cdi}
        - {name: available-configs, mountPath: /available-configs}
        - {name: config, mountPath: /config}
      volumes:
      - {name: device-plugin, hostPath: {path: /var/lib/kubelet/device-plugins}}
      - {name: driver-root, hostPath: {path: $GPUROOT}}
      - {name: gpusim-state, hostPath: {path: $GPUROOT/run/gpusim, type: Directory}}
      - {name: mps-root, hostPath: {path: /run/nvidia/mps, type: DirectoryOrCreate}}
      - {name: mps-shm, hostPath: {path: /run/nvidia/mps/shm}}
      - {name: cdi-root, hostPath: {path: /var/run/cdi, type: DirectoryOrCreate}}
      - {name: available-configs, configMap: {name: nvidia-contract-configs}}
      - {name: config, emptyDir: {}}
EOF
} >"$contract"
had_mps_root=$([ -d /run/nvidia/mps ] && echo yes || true)
mkdir -p /run/nvidia/mps/shm
kc apply -f "$contract" >/dev/null
contract_pod() { kc -n "$NS" get pods -l app=nvidia-contract -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true; }
contract_log() { kc -n "$NS" logs "$(contract_pod)" -c nvidia-device-plugin-ctr 2>/dev/null || true; }
t=$SECONDS
if wait_until 120 gpus_are 8; then
  pass "D5 NVIDIA's chart's containers with this image: nvidia.com/gpu 8/8 after $((SECONDS - t))s"
else
  fail "D5 NVIDIA's chart's containers: expected 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" get pods -l app=nvidia-contract -o wide 2>&1 | sed 's/^/  /' || true
  kc -n "$NS" logs "$(contract_pod)" -c nvidia-device-plugin-init --tail 10 2>&1 | sed 's/^/  init: /' || true
  contract_log | tail -15 | sed 's/^/  plugin: /'
fi
check "D5 the plugin runs as nvidia-device-plugin with NVIDIA's defaults (the driver root at /driver-root)" yes \
  "$(contract_log | grep 'registered with the kubelet' >/dev/null && contract_log | grep 'container_driver_root=/driver-root' >/dev/null && echo yes || echo "no: $(contract_log | tail -3 | tr '\n' ' ')")"
kc label node "$NODE" nvidia.com/device-plugin.config=ts2 --overwrite >/dev/null
t=$SECONDS
if wait_until 90 gpus_are 16; then
  pass "D5 the node label picks the named config through config-manager: 16/16 after $((SECONDS - t))s"
else
  fail "D5 after labelling the node ts2: expected 16/16, saw $(node_gpus capacity)/$(node_gpus allocatable)"
  kc -n "$NS" logs "$(contract_pod)" -c nvidia-device-plugin-sidecar --tail 10 2>&1 | sed 's/^/  sidecar: /' || true
fi
gpu_pod c0 1
if wait_until 60 pod_logged c0 READY; then
  own=$(pod_own_gpu c0)
  check "D5 a pod on a replica gets the GPU it is given" "gpu=$(pod_nvd c0)" "gpu=$([ -n "$own" ] && uuid_of "$own")"
else
  fail "D5 pod on a replica: expected Running, saw $(pod_phase c0)"
fi
delete_test_pods
kc label node "$NODE" nvidia.com/device-plugin.config- >/dev/null
t=$SECONDS
if wait_until 90 gpus_are 8; then
  pass "D5 without the label, back to the default config: 8/8 after $((SECONDS - t))s"
else
  fail "D5 after removing the label: expected 8/8, saw $(node_gpus capacity)/$(node_gpus allocatable)"
fi
kc delete -f "$contract" --wait=true >/dev/null 2>&1 || true
rm -f "$contract"
[ -n "$had_mps_root" ] || rm -rf /run/nvidia/mps
