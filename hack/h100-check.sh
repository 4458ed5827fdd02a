#!/usr/bin/env bash
# Compares what NVML reports on a real machine (GPU 0) with the simulator's
# profile (GPU 0 of dgx-h100 by default): runs nvml-probe against the real
# driver and against a simulated root, and diffs the two with h100_compare.py.
# Writes real.json, sim.json and differences.md (plus nvidia-smi output when
# there is one) under $OUT when set, else /tmp/h100-check/ (--out overrides).
#
#   hack/h100-check.sh                        # build (needs hack/deps.sh) and run
#   hack/h100-check.sh --bundle DIR           # build here; copy the binaries and
#                                             # the shared libraries they need to DIR
#   hack/h100-check.sh --prebuilt DIR         # run with binaries from DIR: a bundle
#                                             # or a build tree (build/release)
# Options:
#   --real-root DIR            driver root of the real side (default /)
#   --real-sim-profile NAME    the real side is a second simulated root with this
#                              profile (how the pipeline is tested without a GPU)
#   --profile NAME             the simulated side's profile (default dgx-h100)
#   --out DIR                  where the results go
#   --fail-on-difference       exit 1 when a counted field differs
#   --expect-difference F,...  exit 1 unless these fields differ
#
# On the device machine (no network, so no apt): build a bundle here and carry it:
#   hack/h100-check.sh --bundle build/h100-bundle
#   run(command="hack/h100-check.sh --prebuilt build/h100-bundle", carry=["build/h100-bundle"])
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$(repo_root)

prebuilt="" bundle="" real_root="/" real_sim_profile="" profile="dgx-h100"
out="${OUT:-/tmp/h100-check}"
compare_args=()
while (($#)); do
  case "$1" in
    --prebuilt) prebuilt="$2"; shift 2 ;;
    --bundle) bundle="$2"; shift 2 ;;
    --real-root) real_root="$2"; shift 2 ;;
    --real-sim-profile) real_sim_profile="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --fail-on-difference) compare_args+=(--fail-on-difference); shift ;;
    --expect-difference) compare_args+=(--expect-difference "$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

build_release() {
  local nvml
  nvml=$("$root/hack/deps.sh") || die "hack/deps.sh failed: without network, build elsewhere and use --prebuilt"
  cmake --preset release -S "$root" -DNVML_INCLUDE_DIR="$nvml" >/dev/null
  cmake --build "$root/build/release" --target nvml-probe gpusim nvidia-ml gpu-device-plugin \
    kubelet-stub -j"$(nproc)"
}

# Bundle: the three binaries, and every shared library they load except the
# C library's own (which must come from the machine that runs them).
if [ -n "$bundle" ]; then
  build_release
  b="$root/build/release"
  rm -rf "$bundle" && mkdir -p "$bundle/lib" "$bundle/lib-cxx"
  cp "$b/tools/nvml_probe/nvml-probe" "$b/sim/gpusim" "$b/sim/libnvidia-ml.so.1" \
    "$b/src/daemon/gpu-device-plugin" "$b/tests/kubelet_stub/kubelet-stub" "$bundle/"
  # The C++ runtime goes apart (lib-cxx/): it needs this machine's glibc or newer,
  # so it is used only where the other machine's own libstdc++ is too old.
  ldd "$bundle/nvml-probe" "$bundle/gpusim" "$bundle/libnvidia-ml.so.1" \
    "$bundle/gpu-device-plugin" "$bundle/kubelet-stub" |
    awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' |
    while read -r lib; do
      case "$lib" in
        */libstdc++.so* | */libgcc_s.so*) cp -L "$lib" "$bundle/lib-cxx/" ;;
        *) cp -L "$lib" "$bundle/lib/" ;;
      esac
    done
  # Debug info would put the bundle over the device tool's 64 MiB.
  find "$bundle" -type f \( -perm -u+x -o -name '*.so*' \) -exec strip --strip-debug {} +
  log "bundle in $bundle ($(du -sh "$bundle" | cut -f1)); run: hack/h100-check.sh --prebuilt $bundle"
  exit 0
fi

if [ -z "$prebuilt" ]; then
  build_release
  prebuilt="$root/build/release"
fi
if [ -x "$prebuilt/nvml-probe" ]; then  # a bundle
  probe="$prebuilt/nvml-probe" gpusim="$prebuilt/gpusim" simlib="$prebuilt/libnvidia-ml.so.1"
  daemon="$prebuilt/gpu-device-plugin" stub="$prebuilt/kubelet-stub"
  dir=$(cd "$prebuilt" && pwd)
  export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ! "$probe" --help >/dev/null 2>&1; then
    export LD_LIBRARY_PATH="$dir/lib:$dir/lib-cxx${LD_LIBRARY_PATH#"$dir/lib"}"
    "$probe" --help >/dev/null || die "the bundle's nvml-probe does not run here (see above)"
    log "using the bundle's own C++ runtime"
  fi
else  # a build tree
  probe="$prebuilt/tools/nvml_probe/nvml-probe" gpusim="$prebuilt/sim/gpusim"
  simlib="$prebuilt/sim/libnvidia-ml.so.1"
  daemon="$prebuilt/src/daemon/gpu-device-plugin" stub="$prebuilt/tests/kubelet_stub/kubelet-stub"
fi
for f in "$probe" "$gpusim" "$simlib"; do
  [ -f "$f" ] || die "$f not found: build nvml-probe, gpusim and nvidia-ml, or make a --bundle"
done

unset GPUSIM_ROOT  # the simulated library must find its root from its own path
mkdir -p "$out"
work=$(mktemp -d /tmp/h100-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

layout() {  # layout DIR PROFILE: a simulated driver root (no device nodes: the probe opens none)
  "$gpusim" root "$1" --profile "$2" --library "$simlib" --no-mknod >/dev/null ||
    die "gpusim root $1 --profile $2 failed"
}

# The real side.
if [ -n "$real_sim_profile" ]; then
  real_root="$work/real-sim"
  layout "$real_root" "$real_sim_profile"
elif [ "$real_root" = "/" ]; then
  { uname -a; cat /etc/os-release 2>/dev/null || true; } >"$out/machine.txt"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -q >"$out/nvidia-smi-q.txt" 2>&1 || true
    nvidia-smi topo -m >"$out/nvidia-smi-topo.txt" 2>&1 || true
  fi
fi
log "probing the real side (driver root $real_root)"
if ! "$probe" --driver-root "$real_root" --output "$out/real.json"; then
  # The driver may live where only ld.so's cache knows it (e.g. /usr/lib/x86_64-linux-gnu/nvidia).
  if [ "$real_root" = "/" ] && grep -q 'not found; tried' "$out/real.json"; then
    log "retrying with dlopen's own search for libnvidia-ml.so.1"
    "$probe" --nvml-library libnvidia-ml.so.1 --output "$out/real.json" ||
      die "nvml-probe failed on the real driver; see $out/real.json"
  else
    die "nvml-probe failed on $real_root; see $out/real.json"
  fi
fi

# The simulated side.
layout "$work/sim" "$profile"
log "probing the simulator (profile $profile)"
"$probe" --driver-root "$work/sim" --output "$out/sim.json" ||
  die "nvml-probe failed on the simulator; see $out/sim.json"

command -v python3 >/dev/null || {
  log "no python3 here: compare $out/real.json and $out/sim.json elsewhere with hack/h100_compare.py"
  exit 0
}
python3 "$root/hack/h100_compare.py" "$out/real.json" "$out/sim.json" \
  --output "$out/differences.md" "${compare_args[@]}"

# The daemon itself on each side: registration with a kubelet stand-in, the
# ListAndWatch list, readiness and its /inventory, with health monitoring on.
daemon_check() {  # daemon_check NAME DRIVER_ROOT [daemon flags...]
  local name="$1" droot="$2" dp="$work/dp-$1" port rc=0
  shift 2
  [ -x "$daemon" ] && [ -x "$stub" ] || { log "no gpu-device-plugin/kubelet-stub: daemon check skipped"; return 0; }
  mkdir -p "$dp"
  "$stub" --dir "$dp" --watch >"$out/daemon-$name-kubelet.log" 2>&1 &
  local stub_pid=$!
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$daemon" --driver-root "$droot" --plugin-directory "$dp" --metrics-bind-address 127.0.0.1 \
    --metrics-port "$port" --health-probe-interval 200ms "$@" >"$out/daemon-$name.log" 2>&1 &
  local daemon_pid=$!
  python3 - "$port" "$out/daemon-$name-inventory.json" <<'PY' || rc=1
import sys, time, urllib.request
port, dest = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 20
while True:
    try:
        if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200:
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("gpu-device-plugin was not ready within 20 s")
    time.sleep(0.05)
print(f"ready after {20 - (deadline - time.time()):.2f} s")
open(dest, "wb").write(urllib.request.urlopen(base + "/inventory", timeout=2).read())
# Let the health monitor wait on events and probe a few times.
time.sleep(1.0)
PY
  kill -TERM "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" || rc=1
  kill -TERM "$stub_pid" 2>/dev/null || true
  wait "$stub_pid" 2>/dev/null || true
  grep -q "register resource=nvidia.com/gpu" "$out/daemon-$name-kubelet.log" || rc=1
  log "daemon check ($name): $([ $rc = 0 ] && echo ok || echo FAILED), see $out/daemon-$name.log"
  return $rc
}
daemon_rc=0
if [ "$real_root" = "/" ] && grep -q '"library": "libnvidia-ml.so.1"' "$out/real.json"; then
  daemon_check real / --nvml-library libnvidia-ml.so.1 || daemon_rc=1
else
  daemon_check real "$real_root" || daemon_rc=1
fi
daemon_check sim "$work/sim" || daemon_rc=1
exit $daemon_rc
