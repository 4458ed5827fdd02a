# Shared pieces of the scripts that run the chart on the local cluster
# (test/e2e/run.sh, hack/demo.sh): paths, laying the simulated driver root,
# bringing the cluster up with the images imported, installing the chart,
# polling helpers, the GPU sample pod and the full teardown.
# Source it after hack/lib.sh, from the repo root; it defines variables and functions only.
# shellcheck shell=bash

E2E_ROOT=$(repo_root)
BUILD=${GDP_BUILD_DIR:-$E2E_ROOT/build/release}
PLUGIN_BIN=$BUILD/src/daemon/gpu-device-plugin
GPUSIM=$BUILD/sim/gpusim
NVML_LIB=$BUILD/sim/libnvidia-ml.so.1
PODRESOURCES=$BUILD/tools/podresources/podresources-list
KUBECTL_GPU=$BUILD/tools/kubectl-gpu/kubectl-gpu
GPUROOT=${GDP_GPU_ROOT:-/var/tmp/gdp-gpuroot}
NODE=${GDP_NODE_NAME:-gpu-node-0}
NS=kube-system
TNS=default
RELEASE=gpu-device-plugin
CHART=$E2E_ROOT/deployments/helm/gpu-device-plugin
STATE=${GDP_CLUSTER_DIR:-/var/tmp/gdp-cluster}
# The second node (GDP_NODES=2, hack/local-cluster.sh): four Tesla T4 (profile t4x4)
# in a driver root of its own, and the chart installed a second time for it (see
# e2e_install_chart).
E2E_NODES=${GDP_NODES:-1}
NODE1=${GDP_NODE1_NAME:-gpu-node-1}
GPUROOT1=${GPUROOT}-$NODE1
KROOT1=${GDP_KUBELET_ROOT1:-/var/lib/kubelet-$NODE1}
RELEASE1=$RELEASE-$NODE1

# Fails with what to build when a binary the scripts need is missing.
e2e_check_binaries() {
  local f
  for f in "$PLUGIN_BIN" "$GPUSIM" "$NVML_LIB" "$PODRESOURCES"; do
    [ -f "$f" ] || die "$f not found: run hack/build.sh release gpu-device-plugin gpusim nvidia-ml podresources-list"
  done
}

# Lays a fresh simulated dgx-h100 driver root at $GPUROOT.
e2e_lay_root() {
  rm -rf "$GPUROOT" "$GPUROOT1"
  "$GPUSIM" root "$GPUROOT" --profile dgx-h100 --library "$NVML_LIB" >/dev/null
  if [ "$E2E_NODES" = 2 ]; then
    "$GPUSIM" root "$GPUROOT1" --profile t4x4 --library "$NVML_LIB" >/dev/null
  fi
}

# Brings the local cluster up with the pause, busybox and plugin images imported,
# and exports its environment (KUBECONFIG, CRI_CONFIG_FILE, PATH).
e2e_cluster_up() {
  GDP_PLUGIN_BINARY="$PLUGIN_BIN" GDP_IMAGES="pause busybox gpu-workload gpu-device-plugin" \
    GDP_NVIDIA_DRIVER_ROOT="$GPUROOT" hack/local-cluster.sh up >/dev/null || return 1
  eval "$(hack/local-cluster.sh env)"
}

# e2e_install_chart QUIET_PERIOD: installs the chart over $GPUROOT with that health
# recovery quiet period (e.g. 10s; "" keeps the chart's default, 5m) and a 1 s probe,
# pinned to node $NODE. With two nodes, installs it a second time (release $RELEASE1)
# for $NODE1 over $GPUROOT1. One release per simulated node because the two kubelets
# share this host: each has its own device-plugin directory and driver root, and a
# hostPath cannot differ per node within one DaemonSet (on a real cluster every node
# has the same paths and one release covers them all).
# The labeller reaches the API server on 127.0.0.1 (host network; this cluster runs no
# kube-proxy, so the kubernetes Service address is not routed).
# Sets $values and $values1 (the values files; teardown removes them).
# E2E_EXTRA_VALUES (YAML lines) and E2E_DISTRIBUTION are added to every values file it makes.
e2e_values() { # NODE DRIVER_ROOT KUBELET_ROOT QUIET_PERIOD METRICS_PORT
  local quiet=""
  [ -z "$4" ] || quiet=$'\n'"    recoveryQuietPeriod: $4"
  cat <<EOF
image: {pullPolicy: Never}
distribution: "${E2E_DISTRIBUTION:-}"
driverRoot: $2
devicePluginPath: $3/device-plugins
nodeSelector: {kubernetes.io/hostname: $1}
metrics: {port: $5, bindAddress: 0.0.0.0}
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
config: |
  version: v1
  health:${quiet}
    probeInterval: 1s
# The simulated NVML library writes its shared state; the driver root stays read-only.
extraVolumes:
  - name: gpusim-state
    hostPath: {path: $2/run/gpusim, type: Directory}
extraVolumeMounts:
  - name: gpusim-state
    mountPath: /driver-root/run/gpusim
${E2E_EXTRA_VALUES:-}
EOF
}
e2e_install_chart() {
  values=$(mktemp)
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "$1" 9101 >"$values"
  helm install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
  if [ "$E2E_NODES" = 2 ]; then
    values1=$(mktemp)
    # Both plugins share the host network: the second serves its metrics on 9102.
    e2e_values "$NODE1" "$GPUROOT1" "$KROOT1" "$1" 9102 >"$values1"
    helm install "$RELEASE1" "$CHART" --namespace "$NS" -f "$values1" >/dev/null
  fi
}

# sharing_chart CONFIG_BODY [EXTRA_VALUES]: upgrades the release with this config (the
# lines under `version: v1`) and values, and restarts the plugin pod at once (the last
# scenario may have left it in a crash-loop back-off). It returns once the new pod alone
# serves the node: the old one may have reloaded the new config file before it went, and a
# pod admitted against what it advertised would fail when it goes.
sharing_chart() {
  local body=$1 extra=${2:-} old
  old=$(plugin_pod)
  {
    # The release's values for node $NODE (lib.sh), with this config instead.
    e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 | sed '/^config: |$/,/^    probeInterval: 1s$/d'
    echo "config: |"
    echo "  version: v1"
    sed 's/^/  /' <<<"$body"
    echo "$extra"
  } >"$values"
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
  kc -n "$NS" delete pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=$NODE" \
    --wait=false >/dev/null 2>&1 || true
  wait_until 90 plugin_replaced "$old" || echo "  (the plugin pod on $NODE was not replaced by a ready one within 90s)"
}
# stop_persistenced ROOT: stops the driver root's nvidia-persistenced stand-in, if it runs.
stop_persistenced() {
  local pid
  pid=$(cat "$1/run/nvidia-persistenced/nvidia-persistenced.pid" 2>/dev/null || true)
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
}
# Tears the cluster down and removes the driver root and values file; prints what is
# left behind ("" when nothing), e.g. " state dir; mounts;".
e2e_teardown() {
  hack/local-cluster.sh down >/dev/null 2>&1 || echo "hack/local-cluster.sh down failed" >&2
  hack/local-registry.sh down >/dev/null 2>&1 || echo "hack/local-registry.sh down failed" >&2
  # A driver root's nvidia-persistenced stand-in a failed scenario left running.
  stop_persistenced "$GPUROOT"
  stop_persistenced "$GPUROOT1"
  rm -rf "$GPUROOT" "$GPUROOT1" "${GDP_MPS_ROOT:-/var/tmp/gdp-mps}"
  rm -f "${values:-}" "${values1:-}" /var/run/cdi/gpu-device-plugin.*
  local left=""
  [ ! -e "$STATE" ] || left+=" state dir;"
  [ ! -e "$GPUROOT" ] || left+=" driver root $GPUROOT;"
  [ ! -e "${GDP_REGISTRY_DIR:-/var/tmp/gdp-registry}" ] || left+=" registry;"
  [ ! -e "$GPUROOT1" ] || left+=" driver root $GPUROOT1;"
  ! ls /var/run/cdi/gpu-device-plugin.* >/dev/null 2>&1 || left+=" CDI spec;"
  [ ! -e /var/lib/kubelet/device-plugins ] || left+=" /var/lib/kubelet/device-plugins;"
  [ ! -e "$KROOT1" ] || left+=" $KROOT1;"
  ! grep -qE 'gdp-cluster|/var/lib/kubelet|gdp-gpuroot' /proc/mounts || left+=" mounts;"
  [ -z "${GDP_KUBELET_ROOT:-}" ] || [ ! -e "$GDP_KUBELET_ROOT" ] || left+=" $GDP_KUBELET_ROOT;"
  [ -z "${GDP_CONTAINERD_CONFIG:-}" ] || [ ! -e "$(dirname "$GDP_CONTAINERD_CONFIG")" ] ||
    left+=" $(dirname "$GDP_CONTAINERD_CONFIG");"
  ! ip link show gdp-cni0 >/dev/null 2>&1 || left+=" bridge gdp-cni0;"
  ! ip link show gdp-cni1 >/dev/null 2>&1 || left+=" bridge gdp-cni1;"
  [ -z "$(find /sys/fs/cgroup -maxdepth 2 -name "gdp-$NODE1" 2>/dev/null)" ] || left+=" cgroup gdp-$NODE1;"
  echo "$left"
}

kc() { kubectl "$@"; }
gpusim() { "$GPUSIM" --root "$GPUROOT" "$@"; }
gpusim1() { "$GPUSIM" --root "$GPUROOT1" "$@"; }
node_gpus() { # capacity/allocatable [NODE]
  kc get node "${2:-$NODE}" -o jsonpath="{.status.$1.nvidia\.com/gpu}" 2>/dev/null || true
}
# node_label NODE KEY: the value of the node's label KEY ("" when absent).
node_label() {
  kc get node "$1" -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"].get("labels", {}).get(sys.argv[1], ""))' "$2"
}
# wait_until SECONDS COMMAND...: polls COMMAND every 0.25 s until it succeeds; 1 on timeout.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.25
  done
}
events_of() { # NODE REASON: the messages of the node's events with that reason
  kc -n default get events --field-selector "involvedObject.kind=Node,involvedObject.name=$1,reason=$2" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null
}
uuid_of() { gpusim show | awk -v i="$1" '$1 == i { print $2 }'; }
plugin_pod() { # [NODE]: the plugin pod's name on the node; nothing when there is none
  { kc -n "$NS" get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=${1:-$NODE}" \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null || true; } | head -1
}
# plugin_replaced OLD_POD [NODE]: after a change to the DaemonSet, the plugin on the node is
# one pod, not OLD_POD, and ready (the old one is gone, not terminating beside it).
plugin_replaced() {
  local pods
  pods=$(kc -n "$NS" get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector "spec.nodeName=${2:-$NODE}" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].ready}{"\n"}{end}' 2>/dev/null) &&
    [ "$(wc -l <<<"$pods")" = 1 ] && [ "${pods% *}" != "$1" ] && [ "${pods#* }" = true ]
}
gpus_are() { [ "$(node_gpus capacity "${2:-}")" = "$1" ] && [ "$(node_gpus allocatable "${2:-}")" = "$1" ]; } # N [NODE]
alloc_is() { [ "$(node_gpus allocatable "${2:-}")" = "$1" ]; } # N [NODE]
# RESOURCE's capacity / allocatable on $NODE; resource_is RESOURCE N: both are N.
capacity_of() { kc get node "$NODE" -o jsonpath="{.status.capacity.${1//./\\.}}" 2>/dev/null || true; }
allocatable_of() { kc get node "$NODE" -o jsonpath="{.status.allocatable.${1//./\\.}}" 2>/dev/null || true; }
resource_is() { [ "$(capacity_of "$1")" = "$2" ] && [ "$(allocatable_of "$1")" = "$2" ]; }
delete_test_pods() { kc -n "$TNS" delete pods -l gdp-e2e --wait=true >/dev/null 2>&1 || true; }
pod_phase() { kc -n "$TNS" get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
pod_running() { [ "$(pod_phase "$1")" = Running ]; }
# The pod's GPU as its log says: "NVD=<NVIDIA_VISIBLE_DEVICES>".
pod_nvd() { kc -n "$TNS" logs "$1" 2>/dev/null | sed -n 's/^NVD=//p' | head -1; }
pod_logged() { kc -n "$TNS" logs "$1" 2>/dev/null | grep "$2" >/dev/null; }

# gpu_pod NAME COUNT [RESOURCE] [NODE_SELECTOR]: a hostNetwork busybox pod asking for
# COUNT of RESOURCE (default nvidia.com/gpu), on node $NODE unless NODE_SELECTOR (a YAML
# flow map) says otherwise, that prints NVIDIA_VISIBLE_DEVICES, the MPS settings it got,
# its /dev/nvidia-caps nodes and what opening each /dev/nvidia0..7 gives, then sleeps
# (exits at once on SIGTERM). GPU_POD_IMAGE picks another image of hack/images.sh,
# GPU_POD_RUN (one line of sh) runs before READY, GPU_POD_RUNTIME_CLASS names the pod's
# RuntimeClass and GPU_POD_ENV (a YAML flow list) is the container's env.
gpu_pod() {
  local limits=""
  [ "$2" = 0 ] || limits="resources: {limits: {${3:-nvidia.com/gpu}: $2}}"
  local selector=${4:-"{kubernetes.io/hostname: $NODE}"}
  local image=${GPU_POD_IMAGE:-busybox}
  local runtime_class=""
  [ -z "${GPU_POD_RUNTIME_CLASS:-}" ] || runtime_class="runtimeClassName: $GPU_POD_RUNTIME_CLASS"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $TNS, labels: {gdp-e2e: "true"}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  nodeSelector: $selector
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  $runtime_class
  containers:
  - name: c
    image: localhost/gdp/$image:e2e
    imagePullPolicy: Never
    env: ${GPU_POD_ENV:-[]}
    $limits
    command:
    - sh
    - -c
    - |
      echo "NVD=\$NVIDIA_VISIBLE_DEVICES"
      echo "NODES=\$(ls /dev | grep -c '^nvidia')"
      echo "MPS=\$CUDA_MPS_PIPE_DIRECTORY|\$CUDA_MPS_PINNED_DEVICE_MEM_LIMIT|\$CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
      echo "MPSPIPE=\$(ls \$CUDA_MPS_PIPE_DIRECTORY 2>/dev/null | tr '\n' ' ')"
      echo "CAPS=\$(ls /dev/nvidia-caps 2>/dev/null | tr '\n' ' ')"
      echo "GDRDRV=\$([ -c /dev/gdrdrv ] && echo yes || echo no)"
      echo "DRIVER=\$(ls /usr/lib/x86_64-linux-gnu 2>/dev/null | grep -c '^libnvidia-ml') \$(ls /lib/firmware/nvidia 2>/dev/null)"
      for i in 0 1 2 3 4 5 6 7; do
        if [ -e /dev/nvidia\$i ]; then echo "dev\$i: \$(cat /dev/nvidia\$i 2>&1 | head -n 1)"; else echo "dev\$i: absent"; fi
      done
      ${GPU_POD_RUN:-}
      echo READY
      trap 'exit 0' TERM
      while true; do sleep 1; done
EOF
}
