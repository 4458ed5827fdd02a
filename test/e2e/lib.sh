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

# Fails with what to build when a binary the scripts need is missing.
e2e_check_binaries() {
  local f
  for f in "$PLUGIN_BIN" "$GPUSIM" "$NVML_LIB" "$PODRESOURCES"; do
    [ -f "$f" ] || die "$f not found: run hack/build.sh release gpu-device-plugin gpusim nvidia-ml podresources-list"
  done
}

# Lays a fresh simulated dgx-h100 driver root at $GPUROOT.
e2e_lay_root() {
  rm -rf "$GPUROOT"
  "$GPUSIM" root "$GPUROOT" --profile dgx-h100 --library "$NVML_LIB" >/dev/null
}

# Brings the local cluster up with the pause, busybox and plugin images imported,
# and exports its environment (KUBECONFIG, CRI_CONFIG_FILE, PATH).
e2e_cluster_up() {
  GDP_PLUGIN_BINARY="$PLUGIN_BIN" GDP_IMAGES="pause busybox gpu-device-plugin" \
    hack/local-cluster.sh up >/dev/null
  eval "$(hack/local-cluster.sh env)"
}

# e2e_install_chart QUIET_PERIOD: installs the chart over $GPUROOT with that health
# recovery quiet period (e.g. 10s; "" keeps the chart's default, 5m) and a 1 s probe.
# Sets $values (the values file; teardown removes it).
e2e_install_chart() {
  local quiet=""
  [ -z "$1" ] || quiet=$'\n'"    recoveryQuietPeriod: $1"
  values=$(mktemp)
  cat >"$values" <<EOF
image: {pullPolicy: Never}
driverRoot: $GPUROOT
config: |
  version: v1
  health:${quiet}
    probeInterval: 1s
# The simulated NVML library writes its shared state; the driver root stays read-only.
extraVolumes:
  - name: gpusim-state
    hostPath: {path: $GPUROOT/run/gpusim, type: Directory}
extraVolumeMounts:
  - name: gpusim-state
    mountPath: /driver-root/run/gpusim
EOF
  helm install "$RELEASE" "$CHART" --namespace "$NS" -f "$values" >/dev/null
}

# Tears the cluster down and removes the driver root and values file; prints what is
# left behind ("" when nothing), e.g. " state dir; mounts;".
e2e_teardown() {
  hack/local-cluster.sh down >/dev/null 2>&1 || echo "hack/local-cluster.sh down failed" >&2
  rm -rf "$GPUROOT"
  rm -f "${values:-}"
  local left=""
  [ ! -e "$STATE" ] || left+=" state dir;"
  [ ! -e "$GPUROOT" ] || left+=" driver root $GPUROOT;"
  [ ! -e /var/lib/kubelet/device-plugins ] || left+=" /var/lib/kubelet/device-plugins;"
  ! grep -qE 'gdp-cluster|/var/lib/kubelet|gdp-gpuroot' /proc/mounts || left+=" mounts;"
  ! ip link show gdp-cni0 >/dev/null 2>&1 || left+=" bridge gdp-cni0;"
  echo "$left"
}

kc() { kubectl "$@"; }
gpusim() { "$GPUSIM" --root "$GPUROOT" "$@"; }
node_gpus() { # capacity/allocatable
  kc get node "$NODE" -o jsonpath="{.status.$1.nvidia\.com/gpu}" 2>/dev/null || true
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
uuid_of() { gpusim show | awk -v i="$1" '$1 == i { print $2 }'; }
plugin_pod() { kc -n "$NS" get pods -l app.kubernetes.io/name=gpu-device-plugin -o jsonpath='{.items[0].metadata.name}'; }
gpus_are() { [ "$(node_gpus capacity)" = "$1" ] && [ "$(node_gpus allocatable)" = "$1" ]; }
alloc_is() { [ "$(node_gpus allocatable)" = "$1" ]; }
pod_phase() { kc -n "$TNS" get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
pod_running() { [ "$(pod_phase "$1")" = Running ]; }
# The pod's GPU as its log says: "NVD=<NVIDIA_VISIBLE_DEVICES>".
pod_nvd() { kc -n "$TNS" logs "$1" 2>/dev/null | sed -n 's/^NVD=//p' | head -1; }
pod_logged() { kc -n "$TNS" logs "$1" 2>/dev/null | grep "$2" >/dev/null; }

# gpu_pod NAME GPUS: a hostNetwork busybox pod that prints NVIDIA_VISIBLE_DEVICES and
# what opening each /dev/nvidia0..7 gives, then sleeps (exits at once on SIGTERM).
gpu_pod() {
  local limits=""
  [ "$2" = 0 ] || limits="resources: {limits: {nvidia.com/gpu: $2}}"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $TNS, labels: {gdp-e2e: "true"}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: c
    image: localhost/gdp/busybox:e2e
    imagePullPolicy: Never
    $limits
    command:
    - sh
    - -c
    - |
      echo "NVD=\$NVIDIA_VISIBLE_DEVICES"
      echo "NODES=\$(ls /dev | grep -c '^nvidia')"
      for i in 0 1 2 3 4 5 6 7; do
        if [ -e /dev/nvidia\$i ]; then echo "dev\$i: \$(cat /dev/nvidia\$i 2>&1 | head -n 1)"; else echo "dev\$i: absent"; fi
      done
      echo READY
      trap 'exit 0' TERM
      while true; do sleep 1; done
EOF
}
