#!/usr/bin/env bash
# Scrape-latency benchmark (docs/metrics.md): the daemon over a simulated
# dgx-h100 (8 GPUs) whose every NVML call sleeps LATENCY_MS (default 5), a
# kubelet stand-in, and SCRAPERS concurrent scrapers for SECONDS.
#   hack/metrics-bench.sh [BUILD_DIR]     (default build/release, else build/asan)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
build=${1:-$root/build/release}
[ -x "$build/src/daemon/gpu-device-plugin" ] || build=$root/build/asan
latency=${LATENCY_MS:-5} scrapers=${SCRAPERS:-8} seconds=${SECONDS_:-10}
work=$(mktemp -d /tmp/gdp-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail_log() { echo "daemon log:"; tail -20 "$work/daemon.log"; }
"$build/sim/gpusim" root "$work/root" --profile dgx-h100 --no-mknod >/dev/null
for g in 0 1 2 3 4 5 6 7; do
  "$build/sim/gpusim" --root "$work/root" set --gpu "$g" "nvml-latency-ms=$latency" temp=60
done
mkdir "$work/dp"
"$build/tests/kubelet_stub/kubelet-stub" --dir "$work/dp" >"$work/stub.log" 2>&1 & pids+=($!)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/src/daemon/gpu-device-plugin" --driver-root "$work/root" --plugin-directory "$work/dp" \
  --metrics-bind-address 127.0.0.1 --metrics-port "$port" --pod-resources-socket '' \
  >"$work/daemon.log" 2>&1 & pids+=($!)
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^gdp_gpu_temperature_celsius' && break
  sleep 0.1
done
echo "NVML latency ${latency} ms per call, 8 GPUs, ${scrapers} concurrent scrapers, ${seconds} s ($build)"
python3 "$root/hack/metrics_scrape_bench.py" "http://127.0.0.1:$port/metrics" \
  --scrapers "$scrapers" --seconds "$seconds" || { fail_log; exit 1; }
curl -sf "http://127.0.0.1:$port/metrics" | grep '^gdp_collector_duration_seconds'
