#!/usr/bin/env bash
# `make demo`: the whole product on one machine. A local one-node Kubernetes with a
# simulated 8-GPU dgx-h100 node and the chart installed as a DaemonSet, then the story,
# each step printed as what to look at, the command that shows it and what it showed:
#   1 the node: capacity, allocatable and the GPU labels the plugin put on it
#   2 GPU pods running a CUDA workload: `nvidia-smi -L` in each lists exactly its GPUs; a
#     pod without a GPU request has no driver and no GPU
#   3 `kubectl gpu`: who holds which GPU
#   4 /metrics for a pod's GPU (utilisation, memory, temperature) and a Prometheus scraping it
#   5 a fault: XID 79 on a GPU in use; allocatable, the node event, the metric and
#     `kubectl gpu` show it; after a reset and a 20 s quiet period the GPU is back
#   6 sharing turned on live by a node label: 8 GPUs become 32 replicas, four pods share one GPU
#   7 `gpu-device-plugin doctor` in the plugin's pod
# Each step's output is checked ([ok] / [FAIL]). Then it stays up until Ctrl-C (or
# SIGTERM) and tears everything down (the cluster, Prometheus, the driver root, mounts, the
# bridge), saying whether anything was left behind.
#
# Usage: hack/demo.sh [--no-wait] [--plots DIR]   (as root; builds what it needs, as hack/e2e.sh does)
#   --no-wait    run the story, tear down and exit: 0 when every check passed, 1 otherwise
#   --plots DIR  before tearing down, draw the dashboard's main panels from the demo's
#                Prometheus into DIR (hack/plot-dashboard.py)
# Env:   GDP_BUILD_DIR, GDP_GPU_ROOT, GDP_NODE_NAME as for test/e2e/run.sh
#        GDP_DEMO_COMMANDS  a file to which each command shown is appended (hack/doc-commands.py
#                           --demo-transcript checks that the docs' demo commands are among them)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"
source test/e2e/lib.sh

wait_mode=1
plots=""
while (($#)); do
  case "$1" in
  --no-wait) wait_mode=0 ;;
  --plots)
    plots=${2:?"--plots needs a directory"}
    shift
    ;;
  *) die "unknown argument '$1': accepted are --no-wait and --plots DIR" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || die "run as root: the kubelet and containerd need it"
# One real node per machine: make e2e holds the same lock.
exec 8>/var/tmp/gdp-e2e.lock
flock -n 8 || die "a real-node run (make e2e or another make demo) is in progress (lock /var/tmp/gdp-e2e.lock); wait for it"
st=$(hack/local-cluster.sh status 2>/dev/null || true)
if grep -q ' running ' <<<"$st"; then
  die "a local cluster is already running (hack/local-cluster.sh status); stop it with hack/local-cluster.sh down"
fi

log "building (cached after the first run)"
hack/deps.sh >/dev/null
hack/build.sh release gpu-device-plugin gpusim nvidia-ml cuda-workload podresources-list kubectl-gpu >/dev/null
hack/k8s-components.sh >/dev/null
# NVIDIA's container runtime (from the toolkit's Go module): the plugin's pod runs under it
# (RuntimeClass nvidia), which gives NVML in the plugin the GPUs' device nodes, as on a
# GPU Operator node.
GDP_NVIDIA_TOOLKIT_BIN=$(hack/nvidia-toolkit.sh | tail -n 1)
export GDP_NVIDIA_TOOLKIT_BIN
e2e_check_binaries
[ -x "$KUBECTL_GPU" ] || die "$KUBECTL_GPU not found: run hack/build.sh release kubectl-gpu"
command -v prometheus >/dev/null || die "prometheus not found: run hack/deps.sh"
[ -z "$plots" ] || install_debian_packages python3-matplotlib

DEMO_DIR=${GDP_DEMO_DIR:-/var/tmp/gdp-demo}
PROM_PORT=19090
QUIET=20s
CONFIG_LABEL=nvidia.com/device-plugin.config
prom_pid=""
done_down=0
sleeper=""
teardown() {
  ((done_down)) && return
  done_down=1
  trap - INT TERM EXIT
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  if [ -n "$prom_pid" ]; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
  fi
  local pid
  pid=$(cat "$GPUROOT/run/nvidia-persistenced/nvidia-persistenced.pid" 2>/dev/null || true)
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  echo
  log "tearing down"
  local left
  left=$(e2e_teardown)
  rm -rf "$DEMO_DIR"
  [ ! -e "$DEMO_DIR" ] || left+=" $DEMO_DIR;"
  if [ -z "$left" ]; then
    log "torn down: nothing left behind"
  else
    log "teardown left:$left"
    exit 1
  fi
}
trap 'rc=$?; teardown; exit $rc' EXIT
trap 'teardown; exit 0' INT TERM

# --- how each step prints and checks ------------------------------------------------------
failed=0
checked=0
nstep=0
step() { # TITLE: a numbered heading
  nstep=$((nstep + 1))
  printf '\n== %d. %s ==\n' "$nstep" "$1"
}
say() { printf '%s\n' "$*"; }
# show COMMAND [LINES]: prints "$ COMMAND" as a reader would type it (after `eval
# "$(hack/local-cluster.sh env)"` and with the demo's PATH), runs it and prints its output
# indented (its first LINES lines when given); $out holds all of it. Records the command in
# $GDP_DEMO_COMMANDS. Never fails: checks do.
show() {
  printf '  $ %s\n' "$1"
  [ -z "${GDP_DEMO_COMMANDS:-}" ] || printf '%s\n' "$1" >>"$GDP_DEMO_COMMANDS"
  out=$(bash -c "$1" 2>&1) || true
  [ -n "$out" ] || return 0
  local n
  n=$(wc -l <<<"$out")
  if [ -n "${2:-}" ] && ((n > $2)); then
    head -n "$2" <<<"$out" | sed 's/^/    /'
    echo "    ... ($((n - $2)) more lines)"
  else
    sed 's/^/    /' <<<"$out"
  fi
}
ok() { # ok DESCRIPTION COMMAND...: a check of this step; prints [ok] or [FAIL] DESCRIPTION
  local what=$1
  shift
  checked=$((checked + 1))
  if "$@"; then
    printf '  [ok] %s\n' "$what"
  else
    failed=$((failed + 1))
    printf '  [FAIL] %s\n' "$what"
  fi
}

# --- the cluster, the plugin, Prometheus ---------------------------------------------------
t_start=$SECONDS
log "laying the simulated dgx-h100 driver root at $GPUROOT"
e2e_lay_root
log "starting the local cluster and importing the images"
e2e_cluster_up
# kubectl finds its plugin `kubectl gpu` on PATH; gpusim drives the simulated GPUs.
export PATH="$(dirname "$KUBECTL_GPU"):$(dirname "$GPUSIM"):$PATH"

# The chart over the simulated driver root, as e2e_values has it, with two named configs
# picked by the node label $CONFIG_LABEL: `default` (whole GPUs) and `timeslice4` (four
# time-sliced replicas per GPU, packed). Both give pods their GPUs through CDI with the
# driver's user space (nvidia-smi, libcuda), so pods need no NVIDIA runtime, and recover a
# GPU after a 20 s quiet period (the default is 5m) so that the fault's end can be watched.
log "installing the chart (named configs default and timeslice4; recovery quiet period $QUIET)"
demo_config() { # EXTRA: one named config's YAML, indented for the values file
  cat <<EOF
      version: v1
      flags:
        plugin:
          deviceListStrategy: cdi-cri
          passDeviceSpecs: false
      health:
        recoveryQuietPeriod: $QUIET
        probeInterval: 1s
$1
EOF
}
kc apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nvidia}
handler: nvidia
EOF
mkdir -p "$DEMO_DIR"
values=$DEMO_DIR/values.yaml
{
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 | sed '/^config: |$/,/^    probeInterval: 1s$/d'
  echo "cdi: {enabled: true, hostPath: /var/run/cdi}"
  echo "runtimeClassName: nvidia"
  # The file the doctor reads (--config-file) is the default named config too.
  echo "config: |"
  demo_config "" | sed 's/^    //'
  echo "nodeConfigs:"
  echo "  enabled: true"
  echo "  map:"
  echo "    default: |"
  demo_config ""
  echo "    timeslice4: |"
  demo_config "      sharing:
        allocationPolicy: packed
        timeSlicing:
          resources:
          - name: nvidia.com/gpu
            replicas: 4"
} >"$values"
# The driver's nvidia-persistenced (the simulator's stand-in), as on a real node: the CDI
# spec mounts its socket into GPU containers, and there the simulated driver finds its root.
"$GPUROOT/usr/bin/nvidia-persistenced" || die "the nvidia-persistenced stand-in in $GPUROOT did not start"
show "helm install $RELEASE ${CHART#"$E2E_ROOT"/} --namespace $NS -f $values"
wait_until 90 gpus_are 8 || die "the node did not reach 8 nvidia.com/gpu within 90s: $(node_gpus capacity)/$(node_gpus allocatable); helm said: $out"

cat >"$DEMO_DIR/prometheus.yml" <<EOF
global: {scrape_interval: 2s}
scrape_configs:
  - job_name: gpu-device-plugin
    static_configs: [{targets: ["127.0.0.1:9101"], labels: {node: $NODE}}]
EOF
prometheus --config.file="$DEMO_DIR/prometheus.yml" --storage.tsdb.path="$DEMO_DIR/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$DEMO_DIR/prometheus.log" 2>&1 &
prom_pid=$!

echo
echo "=== gpu-device-plugin demo: the cluster and the plugin up in $((SECONDS - t_start))s ==="
say "To run the commands below yourself (as root, from $(pwd)):"
say "  eval \"\$(hack/local-cluster.sh env)\"; export PATH=$(dirname "$KUBECTL_GPU"):$(dirname "$GPUSIM"):\$PATH"

# --- 1. the node ---------------------------------------------------------------------------
step "The node: 8 simulated H100s, advertised to the kubelet and labelled"
show "kubectl get node $NODE -o 'custom-columns=NAME:.metadata.name,CAPACITY:.status.capacity.nvidia\\.com/gpu,ALLOCATABLE:.status.allocatable.nvidia\\.com/gpu'"
ok "capacity and allocatable nvidia.com/gpu = 8" gpus_are 8
show "kubectl get node $NODE -o go-template='{{range \$k, \$v := .metadata.labels}}{{\$k}}={{\$v}}{{\"\\n\"}}{{end}}' | grep -E '^nvidia.com/(gpu.(product|count|memory|family|sharing-strategy)|mig.capable|cuda.driver-version.full)='"
ok "labels gpu.product=NVIDIA-H100-80GB-HBM3, gpu.count=8, gpu.memory=81559" \
  grep -qzE 'nvidia.com/gpu.count=8.*nvidia.com/gpu.memory=81559.*nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3' <<<"$out"

# --- 2. GPU pods ---------------------------------------------------------------------------
# demo_pod NAME GPUS SCRIPT: a pod of the workload image (busybox, glibc and a small CUDA
# program; no driver file: the CDI spec brings it) that runs SCRIPT, then sleeps.
demo_pod() {
  local limits=""
  [ "$2" = 0 ] || limits="resources: {limits: {nvidia.com/gpu: $2}}"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $TNS, labels: {gdp-demo: "true"}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  nodeSelector: {kubernetes.io/hostname: $NODE}
  containers:
  - name: c
    image: localhost/gdp/gpu-workload:e2e
    imagePullPolicy: Never
    $limits
    command:
    - sh
    - -c
    - |
      $3
      trap 'exit 0' TERM
      while true; do sleep 1; done
EOF
}
pods_ready() { local p; for p in "$@"; do kc -n "$TNS" logs "$p" 2>/dev/null | grep -q '^READY$' || return 1; done; }
# smi_uuids POD: the GPU UUIDs `nvidia-smi -L` printed in the pod, sorted, one line.
smi_uuids() { kc -n "$TNS" logs "$1" 2>/dev/null | sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[^)]*\))$/\1/p' | sort | paste -sd' '; }
# held_uuids POD: the GPUs the kubelet gave the pod (pod-resources API), sorted, one line;
# a time-sliced replica GPU-<uuid>::<n> counts as its GPU.
held_uuids() {
  "$PODRESOURCES" 2>/dev/null | awk -v p="$TNS/$1/c" '$1 == p && $2 == "nvidia.com/gpu" { print $3 }' |
    tr ',' '\n' | sed 's/::.*//' | sort -u | paste -sd' '
}
same_gpus() { local s; s=$(smi_uuids "$1"); [ -n "$s" ] && [ "$s" = "$(held_uuids "$1")" ]; }

step "GPU pods: each sees exactly its GPUs"
say "train asks for 2 GPUs and runs a CUDA workload (30 GiB, 70% busy), infer asks for 1"
say "(8 GiB, 30%), cpu-only asks for none. Each runs nvidia-smi -L first."
demo_pod train 2 'nvidia-smi -L; cuda-workload --mib 30720 --load 70 --seconds 86400 >/tmp/w.log 2>&1 & echo READY'
demo_pod infer 1 'nvidia-smi -L; cuda-workload --mib 8192 --load 30 --seconds 86400 >/tmp/w.log 2>&1 & echo READY'
demo_pod cpu-only 0 'nvidia-smi -L; echo "nvidia-smi exit $?"; echo "GPU device nodes: $(ls /dev | grep -c ^nvidia)"; echo READY'
wait_until 90 pods_ready train infer cpu-only ||
  say "  (the pods did not all start within 90s: $(kc get pods --no-headers | tr '\n' ' '))"
show "kubectl logs train"
ok "train's nvidia-smi lists exactly the 2 GPUs the kubelet gave it" same_gpus train
show "kubectl logs infer"
ok "infer's nvidia-smi lists exactly its 1 GPU" same_gpus infer
show "kubectl logs cpu-only"
ok "cpu-only has no nvidia-smi (exit 127) and no GPU device node" \
  grep -qzE 'nvidia-smi exit 127.*GPU device nodes: 0' <<<"$out"

# --- 3. kubectl gpu ----------------------------------------------------------------------------
step "kubectl gpu: the cluster's GPUs and who holds them"
show "kubectl gpu"
ok "kubectl gpu lists default/train/c with 2 GPUs and default/infer/c with 1" \
  grep -qzE "$NODE +default/infer/c +nvidia.com/gpu +1 .*$NODE +default/train/c +nvidia.com/gpu +2 " <<<"$out"
say "kubectl gpu reads each node's /allocations (the kubelet's pod-resources, as JSON):"
show "curl -s http://127.0.0.1:9101/allocations" 20
ok "/allocations names train's two GPUs" \
  test "$(grep -c '"pod": *"train"' <<<"$out")" = 2

# --- 4. metrics ----------------------------------------------------------------------------
step "/metrics: each GPU's use, attributed to the pod that holds it"
train_busy() {
  curl -sf http://127.0.0.1:9101/metrics | grep '^gdp_gpu_utilization_ratio{' | grep 'pod="train"' | grep -q ' 0.7$'
}
wait_until 30 train_busy || true
show "curl -s http://127.0.0.1:9101/metrics | grep -E '^gdp_gpu_(utilization_ratio|framebuffer_used_bytes|temperature_celsius)\\{' | grep 'pod=\"train\"'"
# One of train's GPUs has both: utilisation 0.7 and at least the workload's 30 GiB in use.
train_gpu_busy() {
  awk 'match($0, /uuid="[^"]*"/) { g = substr($0, RSTART, RLENGTH) }
       /^gdp_gpu_utilization_ratio\{/ && $NF == "0.7" { u[g] = 1 }
       /^gdp_gpu_framebuffer_used_bytes\{/ && $NF >= 30720 * 1048576 { m[g] = 1 }
       END { for (g in u) if (g in m) exit 0; exit 1 }' <<<"$out"
}
ok "train's GPU is 70% busy with 30 GiB used, on series labelled pod=\"train\"" train_gpu_busy
say "A Prometheus on 127.0.0.1:$PROM_PORT scrapes the plugin every 2s ($DEMO_DIR/prometheus.yml);"
say "on a cluster, the chart's metrics.serviceMonitor.enabled=true (Prometheus Operator) does it."
prom_train() {
  curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=max(gdp_gpu_utilization_ratio{pod="train"})' |
    grep -q '"value":\[[0-9.]*,"0.7"\]'
}
wait_until 30 prom_train || true
say "The dashboard's \"GPU utilisation by pod\" (deployments/grafana), from that Prometheus: train"
say "averages its busy GPU and its idle one."
show "curl -s http://127.0.0.1:$PROM_PORT/api/v1/query --data-urlencode 'query=avg by (namespace, pod) (gdp_gpu_utilization_ratio{pod!=\"\"})'"
ok "Prometheus has train's (0.35) and infer's (0.3) GPU utilisation" \
  grep -qzE '"pod":"infer".*"0.3".*"pod":"train".*"0.35"|"pod":"train".*"0.35".*"pod":"infer".*"0.3"' <<<"$out"

# --- 5. a fault ----------------------------------------------------------------------------
infer_uuid=$(held_uuids infer)
infer_index=$(gpusim show | awk -v u="$infer_uuid" '$2 == u { print $1 }')
step "A fault: XID 79 (GPU fallen off the bus) on infer's GPU $infer_index"
show "gpusim --root $GPUROOT xid --gpu $infer_index --xid 79"
ok "allocatable drops to 7 (capacity stays 8)" wait_until 15 alloc_is 7
xid_event() { events_of "$NODE" GpuXid | grep -q 'XID 79'; }
wait_until 15 xid_event || true
show "kubectl get events --field-selector involvedObject.kind=Node,reason=GpuXid -o custom-columns=REASON:.reason,MESSAGE:.message"
ok "the node has a GpuXid event naming XID 79" grep -q 'XID 79' <<<"$out"
xid_metric() { curl -sf http://127.0.0.1:9101/metrics | grep '^gdp_gpu_xid_errors_total{' | grep "$infer_uuid" | grep -q ' 1$'; }
wait_until 30 xid_metric || true
show "curl -s http://127.0.0.1:9101/metrics | grep -E '^gdp_gpu_(healthy|xid_errors_total)\\{' | grep '$infer_uuid'"
ok "gdp_gpu_healthy is 0 and gdp_gpu_xid_errors_total{xid=\"79\"} is 1 for that GPU" \
  grep -qzE 'gdp_gpu_healthy\{[^}]*\} 0.*gdp_gpu_xid_errors_total\{[^}]*xid="79"[^}]*\} 1' <<<"$out"
show "kubectl gpu"
ok "kubectl gpu counts 1 unhealthy GPU on $NODE" grep -qE "^$NODE .* 8 +7 +[0-9]+ +1 *$" <<<"$out"
say "XID 79 calls for a GPU reset; after it, the plugin waits out the quiet period ($QUIET here)"
say "with no new critical error before the GPU is allocatable again."
show "gpusim --root $GPUROOT reset --gpu $infer_index"
t=$SECONDS
ok "allocatable back to 8 after the reset and the quiet period" wait_until 90 alloc_is 8
say "  (back after $((SECONDS - t))s)"
show "kubectl get events --field-selector involvedObject.kind=Node,reason=GpuRecovered -o custom-columns=REASON:.reason,MESSAGE:.message"
ok "the node has a GpuRecovered event" grep -q GpuRecovered <<<"$out"

# --- 6. sharing, live ----------------------------------------------------------------------
step "Sharing turned on live: the node label $CONFIG_LABEL=timeslice4"
kc -n "$TNS" delete pods -l gdp-demo --wait=true >/dev/null 2>&1 || true
say "(the earlier pods are done and deleted) The label picks the named config timeslice4;"
say "the plugin reloads, with no restart, and advertises four replicas of each GPU."
show "kubectl label node $NODE $CONFIG_LABEL=timeslice4"
ok "capacity and allocatable nvidia.com/gpu = 32" wait_until 60 gpus_are 32
show "kubectl get node $NODE -o 'custom-columns=NAME:.metadata.name,CAPACITY:.status.capacity.nvidia\\.com/gpu,SHARING:.metadata.labels.nvidia\\.com/gpu\\.sharing-strategy,REPLICAS:.metadata.labels.nvidia\\.com/gpu\\.replicas'"
ok "the node's labels say time-slicing with 4 replicas" grep -qE " 32 +time-slicing +4$" <<<"$out"
say "Four 1-replica pods, each a CUDA workload of 15%; the packed policy puts them on one GPU."
for i in 0 1 2 3; do
  demo_pod "share$i" 1 'nvidia-smi -L; cuda-workload --mib 5120 --load 15 --seconds 86400 >/tmp/w.log 2>&1 & echo READY'
done
wait_until 90 pods_ready share0 share1 share2 share3 ||
  say "  (the pods did not all start within 90s: $(kc get pods --no-headers | tr '\n' ' '))"
show "for p in share0 share1 share2 share3; do kubectl logs \$p | grep ^GPU; done"
one_gpu() { [ "$(grep -c '^GPU ' <<<"$out")" = 4 ] && [ "$(sed -n 's/.*(UUID: \(.*\))$/\1/p' <<<"$out" | sort -u | wc -l)" = 1 ]; }
ok "the four pods each see one GPU, the same one" one_gpu
shared_uuid=$(smi_uuids share0)
four_busy() {
  curl -sf http://127.0.0.1:9101/metrics | grep '^gdp_gpu_utilization_ratio{' | grep "$shared_uuid" | grep -q ' 0.6$'
}
wait_until 30 four_busy || true
show "curl -s http://127.0.0.1:9101/metrics | grep '^gdp_gpu_utilization_ratio{' | grep '$shared_uuid'"
ok "their loads add up on that GPU: 4 x 15% = 0.6, one series per pod" \
  test "$(grep -c ' 0.6$' <<<"$out")" = 4
show "kubectl gpu"
ok "kubectl gpu lists the four pods" test "$(grep -cE "default/share[0-3]/c +nvidia.com/gpu +1 " <<<"$out")" = 4

# --- 7. the doctor -------------------------------------------------------------------------
step "gpu-device-plugin doctor: the node's checks, in the plugin's pod"
show "kubectl -n $NS exec ds/$RELEASE -- gpu-device-plugin doctor --config-file=/etc/gpu-device-plugin/config.yaml --container-driver-root=/driver-root"
ok "the doctor finds the 8 GPUs, their device nodes usable, the kubelet socket and no FAIL" \
  grep -qzE 'OK +gpus +8 x NVIDIA H100 80GB HBM3.*OK +device nodes.*OK +kubelet socket.*[0-9]+ OK, [0-9]+ WARN, 0 FAIL' <<<"$out"

echo
if ((failed)); then
  echo "=== the demo's story: $((checked - failed)) of $checked checks passed, $failed FAILED ==="
else
  echo "=== the demo's story: all $checked checks passed ==="
fi
if [ -n "$plots" ]; then
  # A little more of the shared GPU first, so that the last phase shows on the panels.
  sleep 30
  log "drawing the dashboard's panels from the demo's Prometheus into $plots"
  hack/plot-dashboard.py --prometheus "http://127.0.0.1:$PROM_PORT" --out "$plots" \
    --minutes "$(((SECONDS - t_start) / 60 + 1))" ||
    { failed=$((failed + 1)); echo "[FAIL] hack/plot-dashboard.py could not draw the panels"; }
fi
if ((wait_mode == 0)); then
  ((failed == 0)) || exit 1
  exit 0
fi

echo
say "Up until Ctrl-C, which tears everything down. Meanwhile, try:"
say "  kubectl label node $NODE $CONFIG_LABEL-        # back to 8 whole GPUs"
say "  gpusim --root $GPUROOT xid --gpu 2 --xid 48    # a double-bit ECC error"
say "  open http://127.0.0.1:$PROM_PORT/graph (Prometheus) through an SSH tunnel"
# A sleep in the background and `wait`: a signal interrupts `wait` at once (a foreground
# sleep would delay the trap until it ends).
while true; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper" || true
done
