#!/usr/bin/env bash
# `make demo`: a local one-node Kubernetes with a simulated 8-GPU dgx-h100 node and the
# chart installed as a DaemonSet, two sample GPU pods (1 and 2 nvidia.com/gpu), and a
# short report of what they got. Stays up until Ctrl-C (or SIGTERM), then tears
# everything down (the cluster, the driver root, mounts, the bridge) and says whether
# anything was left behind.
#
# Usage: hack/demo.sh    (as root; builds what it needs, as hack/e2e.sh does)
# Env:   GDP_BUILD_DIR, GDP_GPU_ROOT, GDP_NODE_NAME as for test/e2e/run.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"
source test/e2e/lib.sh

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
hack/build.sh release gpu-device-plugin gpusim nvidia-ml cuda-workload podresources-list >/dev/null
hack/k8s-components.sh >/dev/null
e2e_check_binaries

done_down=0
sleeper=""
teardown() {
  ((done_down)) && return
  done_down=1
  trap - INT TERM EXIT
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  echo
  log "tearing down"
  local left
  left=$(e2e_teardown)
  if [ -z "$left" ]; then
    log "torn down: nothing left behind"
  else
    log "teardown left:$left"
    exit 1
  fi
}
trap teardown EXIT
trap 'teardown; exit 0' INT TERM

t_start=$SECONDS
log "laying the simulated dgx-h100 driver root at $GPUROOT"
e2e_lay_root
log "starting the local cluster and importing the images"
e2e_cluster_up
log "installing the chart (recovery quiet period: the default, 5m)"
e2e_install_chart ""
wait_until 60 gpus_are 8 || die "the node did not reach 8 nvidia.com/gpu within 60s: $(node_gpus capacity)/$(node_gpus allocatable)"

log "running two sample pods: gpu-one (1 GPU) and gpu-two (2 GPUs)"
gpu_pod gpu-one 1
gpu_pod gpu-two 2
both_ready() { pod_logged gpu-one READY && pod_logged gpu-two READY; }
wait_until 90 both_ready || die "the sample pods did not start within 90s: $(kc get pods --no-headers | tr '\n' ' ')"

gpu_index() { gpusim show | awk -v u="$1" '$2 == u { print $1 }'; }
indices() { local u out=""; for u in ${1//,/ }; do out+="${out:+,}$(gpu_index "$u")"; done; echo "$out"; }

echo
echo "=== gpu-device-plugin demo: up in $((SECONDS - t_start))s ==="
echo "node $NODE: nvidia.com/gpu capacity $(node_gpus capacity), allocatable $(node_gpus allocatable)"
echo
echo "GPUs per pod, from the kubelet's pod-resources API (podresources-list):"
"$PODRESOURCES" | awk '$2 == "nvidia.com/gpu" { print "  " $1 "  " $3 }' || echo "  (podresources-list failed)"
echo "GPUs per pod, from each pod's NVIDIA_VISIBLE_DEVICES (GPU index on the node):"
for p in gpu-one gpu-two; do
  nvd=$(pod_nvd "$p")
  echo "  $p  $nvd  (index $(indices "$nvd"))"
done
echo
echo "The plugin (hostNetwork, port 9101):"
echo "  curl http://127.0.0.1:9101/readyz     -> $(curl -s -m 2 http://127.0.0.1:9101/readyz | head -c 80)"
echo "  curl http://127.0.0.1:9101/inventory  (the GPUs it found, as JSON)"
echo "  curl http://127.0.0.1:9101/metrics    (Prometheus: GPU, pod and plugin metrics)"
echo
echo "Use kubectl:"
echo "  eval \"\$(hack/local-cluster.sh env)\"    # KUBECONFIG=$KUBECONFIG, the pinned kubectl and crictl on PATH"
echo "  kubectl get pods -A; kubectl logs gpu-two"
echo
echo "Inject a fault (XID 79, GPU fallen off the bus) and watch allocatable drop to 7:"
echo "  $GPUSIM --root $GPUROOT xid --gpu 3 --xid 79"
echo "  kubectl get node $NODE -o jsonpath='{.status.allocatable.nvidia\\.com/gpu}'"
echo "  $GPUSIM --root $GPUROOT recover --gpu 3   # allocatable 8 again after the 5m quiet period"
echo
echo "Up until Ctrl-C, which tears everything down."
# A sleep in the background and `wait`: a signal interrupts `wait` at once (a foreground
# sleep would delay the trap until it ends).
while true; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper" || true
done
