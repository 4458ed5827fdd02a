#!/usr/bin/env bash
# A one-node Kubernetes cluster on this machine, without systemd, for the real-node tests.
#
# Usage: hack/local-cluster.sh up|down|status|env|restart-kubelet
#   up      builds (or reuses) the components, then starts etcd, kube-apiserver,
#           kube-controller-manager, kube-scheduler, containerd and the kubelet, each
#           waited for with a deadline, imports the local images, and waits for the
#           node to be Ready. Cleans up what a previous run left behind first.
#   down    stops everything and removes every trace: processes, pod sandboxes and
#           containers, mounts, the kubepods cgroups, the CNI bridge, sockets, state.
#   status  says which daemons run and shows the node.
#   restart-kubelet  stops and starts the kubelet (pods keep running), waits for Ready.
#   env     prints the exports for eval: KUBECONFIG, CRI_CONFIG_FILE (crictl), PATH.
#
# Settings (environment):
#   GDP_CLUSTER_DIR   state dir: certs, data, logs, pid files, sockets (default /var/tmp/gdp-cluster)
#   GDP_KUBELET_ROOT  the kubelet's --root-dir (default /var/lib/kubelet, where device
#                     plugins expect device-plugins/kubelet.sock)
#   GDP_NODE_NAME     node name (default gpu-node-0)
#   GDP_SNAPSHOTTER   containerd snapshotter (default: overlayfs if it mounts here, else native)
#   GDP_READY_TIMEOUT seconds to wait for the node to be Ready (default 120)
#   GDP_IMAGES        images hack/images.sh builds and imports on `up` (default "pause busybox")
#   GDP_NODES         number of nodes, 1 or 2 (default 1). The second node is a second
#                     kubelet with its own containerd (root, state, socket), kubelet root
#                     dir, ports, CNI bridge and cgroup root, joined to the same API server:
#   GDP_NODE1_NAME    its name (default gpu-node-1)
#   GDP_KUBELET_ROOT1 its --root-dir (default /var/lib/kubelet-gpu-node-1); its state
#                     (containerd, kubelet config, logs as *-1.log) lives in $GDP_CLUSTER_DIR/node1
#   GDP_NVIDIA_TOOLKIT_BIN  a folder with NVIDIA's nvidia-container-runtime and
#                     nvidia-cdi-hook (hack/nvidia-toolkit.sh builds them): containerd then
#                     also has the runtime handlers `nvidia` (the NVIDIA runtime in its
#                     jit-cdi mode, the default since toolkit 1.18) and `nvidia-cdi` (its cdi
#                     mode), as GPU Operator clusters have, over the driver root
#   GDP_NVIDIA_DRIVER_ROOT  that driver root (default /); runc stays the default handler
#   GDP_CONTAINERD_CONFIG   where node 0's containerd config is written and read (default
#                     $GDP_CLUSTER_DIR/containerd/config.toml): a distribution's place, e.g. k3s'
#                     /var/lib/rancher/k3s/agent/etc/containerd/config.toml. Directories it makes
#                     for it, or for GDP_KUBELET_ROOT, go again on `down`.
#   GDP_REGISTRY_HOSTS_DIR  where every node's containerd reads registries' hosts.toml (a
#                     registry's CA, mirrors) at each pull, as <host:port>/hosts.toml (default
#                     /var/tmp/gdp-registry/hosts.d, where hack/local-registry.sh writes its own)
#   GDP_KUBERNETES    the Kubernetes minor, 1.33 to 1.37 (default the newest; hack/lib.sh k8s_minors)
#   GDP_RUNTIME       the container runtime: containerd (2.x, default), containerd-1.7 (its
#                     version 2 config; CDI enabled) or crio (CRI-O with Debian's conmon and
#                     runc; images copied into its store before it starts). The last two run
#                     one node, without the NVIDIA runtime.
#
# Network: every daemon listens on 127.0.0.1 only. Pods are meant to use hostNetwork;
# the CNI config (needed for the node to report Ready) is a bridge with no gateway and
# no masquerading, so a non-hostNetwork pod can reach only its own bridge. The Node's
# InternalIP is set to 127.0.0.1, so the API server reaches the kubelet over loopback.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

root=$(repo_root)
S="${GDP_CLUSTER_DIR:-/var/tmp/gdp-cluster}"
KROOT0="${GDP_KUBELET_ROOT:-/var/lib/kubelet}"
NODE0="${GDP_NODE_NAME:-gpu-node-0}"
NODE1="${GDP_NODE1_NAME:-gpu-node-1}"
KROOT1="${GDP_KUBELET_ROOT1:-/var/lib/kubelet-$NODE1}"
NODES="${GDP_NODES:-1}"
[[ "$NODES" =~ ^[12]$ ]] || die "GDP_NODES=$NODES: 1 or 2 nodes are supported"
# A cluster's Kubernetes minor and runtime are kept in $S, so that down, status, env and
# restart-kubelet act on the cluster that runs, whatever GDP_KUBERNETES and GDP_RUNTIME say then.
if [ "${1:-}" != up ]; then
  if [ -f "$S/kubernetes" ]; then GDP_KUBERNETES=$(cat "$S/kubernetes") && export GDP_KUBERNETES; fi
  if [ -f "$S/runtime" ]; then GDP_RUNTIME=$(cat "$S/runtime") && export GDP_RUNTIME; fi
fi
# use_runtime NAME: RUNTIME, and RT, the runtime daemon's name (its pid and log files).
use_runtime() {
  RUNTIME=$1 RT=containerd
  [ "$RUNTIME" != crio ] || RT=crio
}
runtime=$(runtime_name) || exit 1
use_runtime "$runtime"
if [ "$RUNTIME" != containerd ] && [ "${1:-}" = up ]; then
  [ "$NODES" = 1 ] || die "GDP_RUNTIME=$RUNTIME runs one node; GDP_NODES=2 needs containerd (2.x)"
  [ -z "${GDP_NVIDIA_TOOLKIT_BIN:-}" ] || die "GDP_NVIDIA_TOOLKIT_BIN: the NVIDIA runtime is set up for containerd 2.x only, not $RUNTIME"
fi
READY_TIMEOUT="${GDP_READY_TIMEOUT:-120}"
ETCD_PORT=2379 ETCD_PEER_PORT=2380 API_PORT=6443
KCM_PORT=10257 SCHED_PORT=10259 SERVICE_RANGE=10.96.0.0/24
MARKER=.gdp-local-cluster # in $KROOT: this script made it, so `down` may delete it

pki="$S/pki"
logs="$S/logs"
run="$S/run"

# select_node INDEX: sets the per-node settings. Node 0 keeps the one-node layout
# (state in $S, ports 10250/10248, the default kubelet root); node 1 has its own.
#   NODE KROOT  name and kubelet root dir
#   N SFX       its state dir, and the suffix of its daemons' pid and log names
#   SOCK        its containerd socket
#   CGROOT      the kubelet's cgroupRoot ("/" for node 0; a kubelet each needs its own)
select_node() {
  if [ "$1" = 0 ]; then
    NODE=$NODE0 KROOT=$KROOT0 N=$S SFX="" KUBELET_PORT=10250 KUBELET_HEALTHZ_PORT=10248
    BRIDGE=gdp-cni0 CNI_NET=gdp-bridge POD_SUBNET=10.244.0.0/24 CGROOT=/
  else
    NODE=$NODE1 KROOT=$KROOT1 N=$S/node1 SFX=-1 KUBELET_PORT=11250 KUBELET_HEALTHZ_PORT=11248
    BRIDGE=gdp-cni1 CNI_NET=gdp-bridge1 POD_SUBNET=10.244.1.0/24 CGROOT=/gdp-$NODE1
  fi
  SOCK="$N/run/$RT.sock"
  CCONF="$N/containerd/config.toml"
  if [ "$1" = 0 ] && [ -n "${GDP_CONTAINERD_CONFIG:-}" ]; then CCONF=$GDP_CONTAINERD_CONFIG; fi
}
select_node 0

# mkdir_tracked DIR: makes DIR and its missing parents, noting each it made in $S/made-dirs
# (deepest last), so that `down` removes them again.
mkdir_tracked() {
  local d=$1 missing=()
  while [ ! -e "$d" ]; do
    missing=("$d" "${missing[@]}")
    d=$(dirname "$d")
  done
  ((${#missing[@]})) || return 0
  mkdir -p "${missing[-1]}"
  printf '%s\n' "${missing[@]}" >>"$S/made-dirs"
}

# --- helpers ---------------------------------------------------------------------------

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# alive PID: the process runs (a zombie waiting for init to reap it does not count).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}
# ours PID: alive, and its command line names our state dir (a pid file left by a
# crashed run may name a pid the system has since given to another process).
ours() {
  alive "$1" && { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF -- "$S/"
}
pid_alive() { [ -f "$run/$1.pid" ] && ours "$(cat "$run/$1.pid")"; }

# start NAME BINARY ARGS...: runs a daemon in its own session, logging to $logs/NAME.log.
start() {
  local name=$1
  shift
  if pid_alive "$name"; then
    log "$name already runs (pid $(cat "$run/$name.pid"))"
    return 0
  fi
  # 9>&-: the daemon must not hold the lock of this script (see lock()).
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$run/$name.pid"
}

# healthy NAME DESCRIPTION SECONDS COMMAND...: waits for a started daemon, failing
# early with its log tail when it exits.
healthy() {
  local name=$1 what=$2 secs=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    # alive, not ours: the pid is the one start() just wrote, and until its child has
    # exec'd the daemon its command line is still this script's.
    if ! alive "$(cat "$run/$name.pid" 2>/dev/null)"; then
      tail -n 30 "$logs/$name.log" >&2 || true
      die "$name exited while starting; its log is $logs/$name.log (last lines above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$logs/$name.log" >&2 || true
      die "$name not $what after ${secs}s; its log is $logs/$name.log (last lines above)"
    fi
    sleep 0.2
  done
  log "$name is $what ($((secs - (deadline - SECONDS)))s)"
}

# stop_pid NAME: TERM, then KILL after 10 s, then forget the pid file.
stop_pid() {
  local f="$run/$1.pid" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if ours "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
      log "$1 (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

kc() { kubectl --kubeconfig "$S/admin.kubeconfig" "$@"; }

# --- certificates and kubeconfigs ------------------------------------------------------

# cert NAME SUBJECT [SAN]: an EC P-256 key and a certificate signed by the cluster CA.
cert() {
  local name=$1 subj=$2 san=${3:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null ||
    die "openssl could not sign the $name certificate"
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

# kubeconfig FILE USER CERT: a kubeconfig for 127.0.0.1:$API_PORT with a client certificate.
kubeconfig() {
  local file=$1 user=$2 c=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: gdp
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$c.crt")
    client-key-data: $(base64 -w0 "$pki/$c.key")
contexts:
- name: gdp
  context: {cluster: gdp, user: $user}
current-context: gdp
EOF
  chmod 600 "$file"
}

make_pki() {
  [ -f "$pki/done" ] && return 0
  mkdir -p "$pki"
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=gdp-local-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$pki/ca.crt" 2>/dev/null || die "openssl could not create the cluster CA in $pki"
  cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=gdp-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kubelet-client "/O=system:nodes/CN=system:node:$NODE0"
  cert kubelet-serving "/CN=$NODE0" "IP:127.0.0.1,DNS:localhost,DNS:$NODE0"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
  kubeconfig "$S/admin.kubeconfig" gdp-admin admin
  kubeconfig "$S/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$S/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$S/kubelet.kubeconfig" "system:node:$NODE0" kubelet-client
  touch "$pki/done"
}

# make_node_pki: the kubelet's client and serving certificates of a node other than 0.
make_node_pki() {
  [ -n "$SFX" ] || return 0
  mkdir -p "$N"
  cert "kubelet-client$SFX" "/O=system:nodes/CN=system:node:$NODE"
  cert "kubelet-serving$SFX" "/CN=$NODE" "IP:127.0.0.1,DNS:localhost,DNS:$NODE"
  chmod 600 "$pki"/*.key
  kubeconfig "$N/kubelet.kubeconfig" "system:node:$NODE" "kubelet-client$SFX"
}

# --- configuration files ---------------------------------------------------------------

pick_snapshotter() {
  if [ -n "${GDP_SNAPSHOTTER:-}" ]; then
    echo "$GDP_SNAPSHOTTER"
    return
  fi
  local d
  d=$(mktemp -d "$S/overlay-probe.XXXX")
  mkdir "$d"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
    umount "$d/m"
    echo overlayfs
  else
    echo native
  fi
  rm -rf "$d"
}

# nvidia_runtimes: with GDP_NVIDIA_TOOLKIT_BIN, writes the NVIDIA runtime's config for each
# of its modes and a wrapper that points it there (it reads NVIDIA_CTK_CONFIG_FILE_PATH),
# and prints containerd's runtime handlers for them; nothing without it.
nvidia_runtimes() {
  local tk=${GDP_NVIDIA_TOOLKIT_BIN:-} mode handler
  [ -n "$tk" ] || return 0
  [ -x "$tk/nvidia-container-runtime" ] || die "GDP_NVIDIA_TOOLKIT_BIN=$tk has no nvidia-container-runtime: run hack/nvidia-toolkit.sh"
  mkdir -p "$N/nvidia"
  for mode in jit-cdi cdi; do
    handler=nvidia
    [ "$mode" = jit-cdi ] || handler=nvidia-$mode
    cat >"$N/nvidia/$mode.toml" <<EOF
[nvidia-container-cli]
root = "${GDP_NVIDIA_DRIVER_ROOT:-/}"
[nvidia-ctk]
path = "$tk/nvidia-cdi-hook"
[nvidia-container-runtime]
debug = "$logs/nvidia-container-runtime$SFX.log"
log-level = "info"
mode = "$mode"
runtimes = ["$(command -v runc)"]
[nvidia-container-runtime.modes.cdi]
default-kind = "nvidia.com/gpu"
spec-dirs = ["$N/cdi", "/etc/cdi", "/var/run/cdi"]
annotation-prefixes = ["cdi.k8s.io/"]
EOF
    printf '#!/bin/sh\nNVIDIA_CTK_CONFIG_FILE_PATH=%s exec %s "$@"\n' \
      "$N/nvidia/$mode.toml" "$tk/nvidia-container-runtime" >"$N/nvidia/$handler"
    chmod 755 "$N/nvidia/$handler"
    cat <<EOF
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.$handler]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.$handler.options]
        BinaryName = "$N/nvidia/$handler"
        SystemdCgroup = false
EOF
  done
}

# containerd_config_top VERSION: makes the directories of the selected node's containerd and
# writes the top of its config (state, sockets) in that config version; the caller appends
# the CRI plugin's sections.
containerd_config_top() {
  mkdir -p "$N/containerd" "$N/cni/net.d" "$N/cdi" "$N/run"
  mkdir_tracked "$(dirname "$CCONF")"
  case "$CCONF" in "$S"/*) ;; *) echo "$CCONF" >>"$S/made-files" ;; esac
  cat >"$CCONF" <<EOF
version = $1
root = "$N/containerd/root"
state = "$N/containerd/state"
oom_score = 0

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$SOCK.debug"
[metrics]
  address = ""

EOF
}

write_containerd_config() {
  local snap=$1
  if [ -n "${GDP_NVIDIA_TOOLKIT_BIN:-}" ] && ! [ -x "$GDP_NVIDIA_TOOLKIT_BIN/nvidia-container-runtime" ]; then
    die "GDP_NVIDIA_TOOLKIT_BIN=$GDP_NVIDIA_TOOLKIT_BIN has no nvidia-container-runtime: run hack/nvidia-toolkit.sh"
  fi
  containerd_config_top 3
  cat >>"$CCONF" <<EOF
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

# ctr images import goes through the transfer service: unpack into the same snapshotter.
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "linux/amd64"
  snapshotter = "$snap"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "$snap"
  # Registries' hosts.toml (CA, mirrors), read at each pull: hack/local-registry.sh writes one.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "${GDP_REGISTRY_HOSTS_DIR:-/var/tmp/gdp-registry/hosts.d}"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/gdp/pause:e2e"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine strips CAP_SYS_RESOURCE: never ask for an oom_score_adj below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = ["$N/cdi", "/etc/cdi", "/var/run/cdi"]
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
$(nvidia_runtimes)
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$N/cni/net.d"
    max_conf_num = 1
EOF
}

# The selected node's CNI config.
write_cni_config() {
  mkdir -p "$N/cni/net.d"
  # A bridge without gateway or masquerading: pods reach their own bridge and nothing else.
  cat >"$N/cni/net.d/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "dataDir": "$N/cni/ipam"
      }
    }
  ]
}
EOF
}

# The selected node's containerd 1.7 config: the version 2 format of the same settings.
write_containerd17_config() {
  local snap=$1 cri='plugins."io.containerd.grpc.v1.cri"'
  containerd_config_top 2
  cat >>"$CCONF" <<EOF
[$cri]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "localhost/gdp/pause:e2e"
  # This machine strips CAP_SYS_RESOURCE: never ask for an oom_score_adj below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  # CDI is off by default before containerd 2.0.
  enable_cdi = true
  cdi_spec_dirs = ["$N/cdi", "/etc/cdi", "/var/run/cdi"]
  [$cri.containerd]
    snapshotter = "$snap"
    default_runtime_name = "runc"
    [$cri.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [$cri.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
    max_conf_num = 1
  [$cri.registry]
    config_path = "${GDP_REGISTRY_HOSTS_DIR:-/var/tmp/gdp-registry/hosts.d}"
EOF
}

# has_cap_sys_resource: this shell's effective capabilities include CAP_SYS_RESOURCE (24).
has_cap_sys_resource() {
  local eff
  eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
  (((0x$eff >> 24) & 1))
}

# CRI-O sets hugetlb limits whenever /proc/cgroups lists the controller, and runc then fails
# to start any container where that hierarchy is not mounted, as here (cgroup v1 without
# hugetlb mounted): mount it for the cluster's life; `down` unmounts it (listed in $S/made-mounts).
mount_hugetlb() {
  local h=/sys/fs/cgroup/hugetlb
  [ -d /sys/fs/cgroup/memory ] || return 0 # cgroup v2: one hierarchy
  awk '$1 == "hugetlb" && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups || return 0
  awk '$3 == "cgroup" && $4 ~ /(^|,)hugetlb(,|$)/ { found = 1 } END { exit !found }' /proc/self/mounts && return 0
  mkdir -p "$h" && mount -t cgroup -o hugetlb hugetlb "$h" ||
    die "could not mount the hugetlb cgroup hierarchy at $h, which CRI-O needs here"
  echo "$h" >>"$S/made-mounts"
}

# The selected node's CRI-O config: every path under the node's state dir, cgroupfs, runc
# watched by Debian's conmon; NRI and metrics off. (Debian 12's crun, 1.8.1, refuses the OCI
# spec version CRI-O 1.36 writes: "unknown version specified".)
write_crio_config() {
  local snap=$1 c=$N/crio driver=overlay runc
  runc=$(command -v runc)
  [ "$snap" = overlayfs ] || driver=vfs
  # Its config in a directory of its own, as /etc/crio: a pod mounting it (the doctor's) must
  # not include CRI-O's storage, or CRI-O makes that mount's propagation HostToContainer.
  mkdir -p "$c"/{hooks.d,exits,attach,ns,pods,etc/crio.conf.d} "$N/cni/net.d" "$N/cdi" "$N/run"
  # CRI-O checks this policy at every container start, for images copied in as for pulled ones.
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$c/etc/policy.json"
  # No unqualified-search registries: every image name is complete (localhost/gdp/...).
  echo 'unqualified-search-registries = []' >"$c/etc/registries.conf"
  # A pod's oom_score_adj below ours needs CAP_SYS_RESOURCE, which this machine may strip
  # (critical pods get -997). containerd clamps it (restrict_oom_score_adj); CRI-O has no such
  # setting, so there its runc is a wrapper that clamps it in each container's config.json.
  if ! has_cap_sys_resource; then
    runc=$c/runc
    cat >"$runc" <<EOF
#!/bin/sh
# runc, with process.oomScoreAdj raised to this process's own where it is below.
bundle="" prev=""
for a in "\$@"; do
  [ "\$prev" = --bundle ] || [ "\$prev" = -b ] && bundle=\$a
  prev=\$a
done
if [ -n "\$bundle" ] && [ -f "\$bundle/config.json" ]; then
  own=\$(cat /proc/self/oom_score_adj)
  jq -c --argjson own "\$own" 'if (.process.oomScoreAdj // \$own) < \$own then .process.oomScoreAdj = \$own else . end' \
    "\$bundle/config.json" >"\$bundle/config.json.tmp" && mv "\$bundle/config.json.tmp" "\$bundle/config.json"
fi
exec $(command -v runc) "\$@"
EOF
    chmod 755 "$runc"
  fi
  cat >"$c/etc/crio.conf" <<EOF
[crio]
root = "$c/storage"
runroot = "$c/run"
storage_driver = "$driver"
log_dir = "$c/pods"
version_file = "$c/version"
version_file_persist = "$c/version-persist"
clean_shutdown_file = "$c/clean.shutdown"
[crio.api]
listen = "$SOCK"
stream_address = "127.0.0.1"
stream_port = "0"
[crio.runtime]
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
log_level = "warn"
selinux = false
irqbalance_config_file = ""
irqbalance_config_restore_file = "disable"
cdi_spec_dirs = ["$N/cdi", "/etc/cdi", "/var/run/cdi"]
hooks_dir = ["$c/hooks.d"]
container_exits_dir = "$c/exits"
container_attach_socket_dir = "$c/attach"
namespaces_dir = "$c/ns"
pinns_path = "$RBIN/pinns"
enable_criu_support = false
default_runtime = "runc"
[crio.runtime.runtimes.runc]
runtime_path = "$runc"
runtime_root = "$c/runc-root"
monitor_path = "$(command -v conmon)"
monitor_cgroup = "pod"
[crio.image]
pause_image = "localhost/gdp/pause:e2e"
pinned_images = ["localhost/gdp/pause:e2e"]
signature_policy = "$c/etc/policy.json"
[crio.network]
network_dir = "$N/cni/net.d"
plugin_dirs = ["/usr/lib/cni"]
[crio.nri]
enable_nri = false
[crio.metrics]
enable_metrics = false
EOF
}

write_kubelet_config() {
  mkdir -p "$N/manifests" "$N/pod-logs"
  mkdir_tracked "$(dirname "$KROOT")"
  mkdir -p "$KROOT"
  touch "$KROOT/$MARKER"
  # `down` tears down this root dir even when run with other settings.
  [ -n "$SFX" ] || echo "$KROOT" >"$S/kubelet-root"
  # The kubelet's device manager listens at /var/lib/kubelet/device-plugins whatever its root
  # dir: with another root dir, that directory is ours to make and remove too.
  if [ "$KROOT" != /var/lib/kubelet ] && [ -z "$SFX" ]; then mkdir_tracked /var/lib/kubelet/device-plugins; fi
  local h
  if [ "$CGROOT" != / ]; then
    # The kubelet wants its cgroupRoot to exist in every hierarchy; cpuset needs the
    # parent's CPUs and memory nodes before anything can run below it.
    for h in /sys/fs/cgroup/*/; do
      [ -d "$h" ] && mkdir -p "$h${CGROOT#/}" 2>/dev/null || true
    done
    if [ -d /sys/fs/cgroup/cpuset ]; then
      cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset$CGROOT/cpuset.cpus"
      cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset$CGROOT/cpuset.mems"
    fi
  fi
  cat >"$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 kernel: Kubernetes 1.35-1.37 still run on it when told so.
failCgroupV1: false
cgroupDriver: cgroupfs
# CAP_SYS_RESOURCE is stripped here: the kubelet may not lower its own oom_score_adj.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$SOCK
staticPodPath: $N/manifests
podLogsDir: $N/pod-logs
$([ "$CGROOT" = / ] || echo "cgroupRoot: $CGROOT")
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $pki/kubelet-serving$SFX.crt
tlsPrivateKeyFile: $pki/kubelet-serving$SFX.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
failSwapOn: false
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
syncFrequency: 10s
fileCheckFrequency: 5s
# Allocatable reaches the API server at the next node status update: 2 s keeps the
# suite's "allocatable drops within 5 s" about the plugin, not the kubelet's cadence
# (the kubelet's default is 10 s; the plugin's own XID-to-ListAndWatch time is in
# docs/benchmarks.md, milliseconds).
nodeStatusUpdateFrequency: 2s
EOF
}

# --- teardown --------------------------------------------------------------------------

# Pids of processes in the kubelet's cgroup tree (the pods' containers), any hierarchy.
kubepods_pids() {
  local f
  for f in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods \
    /sys/fs/cgroup/*/gdp-"$NODE1"; do
    if [ -d "$f" ]; then find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
  done | sort -u
}

# Pids of the runtime's per-container monitors: containerd shims serving our containerd (they
# name its socket on their command line), CRI-O's conmons (they name its state dir).
shim_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    case "$cmd" in *"-address $SOCK "* | *conmon*" $N/crio/"*) basename "$p" ;; esac
  done
  return 0
}

remove_kubepods_cgroups() {
  local h d top
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for top in kubepods "gdp-$NODE1"; do
      [ -d "$h/$top" ] || continue
      # Deepest first: a cgroup can only be removed once its children are.
      find "$h/$top" -depth -type d 2>/dev/null | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    done
  done
}

unmount_under() {
  local dir=$1 m
  [ -n "$dir" ] || return 0
  # Longest paths first, so nested mounts go before their parents.
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
}

do_down() {
  local bin=${BIN:-$(k8s_bin_dir)} i
  # The runtime the cluster was brought up with (on `up`, a previous cluster's).
  [ ! -f "$S/runtime" ] || use_runtime "$(cat "$S/runtime")"
  # The kubelet root dir node 0 was brought up with (GDP_KUBELET_ROOT then), whatever now.
  if [ -f "$S/kubelet-root" ]; then
    KROOT0=$(cat "$S/kubelet-root")
    select_node 0
  fi
  for i in 1 0; do
    select_node "$i"
    stop_pid "kubelet$SFX"
    # Let the runtime stop and remove pods itself while it still runs: that unmounts
    # rootfs and network namespaces and releases CNI addresses properly.
    if pid_alive "$RT$SFX" && [ -x "$bin/crictl" ] && [ -S "$SOCK" ]; then
      timeout 60 "$bin/crictl" --config "$N/crictl.yaml" rmp -fa >/dev/null 2>&1 ||
        log "crictl rmp -fa on $NODE failed; killing what is left instead"
    fi
  done
  stop_pid kube-scheduler
  stop_pid kube-controller-manager
  stop_pid kube-apiserver
  for i in 1 0; do
    select_node "$i"
    stop_pid "$RT$SFX"
    [ -z "$SFX" ] || stop_pid "mntns$SFX"
  done
  stop_pid etcd
  # Anything left (after a crash): shims of our containerds, then the pods' processes.
  local pids
  for i in 1 0; do
    select_node "$i"
    pids=$(shim_pids)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  done
  pids=$(kubepods_pids)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  wait_for "the pods' processes to exit" 10 test -z "$(kubepods_pids)" || true
  remove_kubepods_cgroups
  if [ -f "$S/made-mounts" ]; then
    local m
    while IFS= read -r m; do umount "$m" && rmdir "$m" || log "could not unmount $m"; done <"$S/made-mounts"
  fi
  local id left ok=0
  for i in 1 0; do
    select_node "$i"
    unmount_under "$KROOT"
  done
  unmount_under "$S"
  for i in 1 0; do
    select_node "$i"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || log "could not delete bridge $BRIDGE"; fi
    # libcni caches each sandbox's results in /var/lib/cni/results (not configurable in
    # containerd): drop those of our sandboxes.
    for id in $(ls "$N/containerd/root/io.containerd.grpc.v1.cri/sandboxes" 2>/dev/null); do
      rm -f /var/lib/cni/results/*-"$id"-*
    done
    # --one-file-system: should a mount have survived, never delete through it.
    if [ -f "$KROOT/$MARKER" ]; then
      rm -rf --one-file-system "$KROOT"
    elif [ -d "$KROOT" ] && [ -n "$(ls -A "$KROOT" 2>/dev/null)" ]; then
      log "left $KROOT alone: it was not made by this script (no $MARKER)"
    fi
  done
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # A config written outside the state dir, and the directories made for it and the kubelet.
  [ ! -f "$S/made-files" ] || xargs -r -d '\n' rm -f <"$S/made-files"
  if [ -f "$S/made-dirs" ]; then
    local d
    while IFS= read -r d; do
      # The device manager's directory holds its sockets and checkpoint: all ours.
      case "$d" in */device-plugins) rm -rf --one-file-system "$d" ;; esac
      [ ! -d "$d" ] || rmdir "$d" 2>/dev/null || log "left $d: not empty"
    done < <(tac "$S/made-dirs")
  fi
  rm -rf --one-file-system "$S"
  left=$(kubepods_pids; for i in 1 0; do select_node "$i"; shim_pids; done)
  [ -z "$left" ] || { log "teardown incomplete: processes still alive: $left"; ok=1; }
  left=$(find /sys/fs/cgroup -maxdepth 2 \( -name kubepods -o -name "gdp-$NODE1" \) 2>/dev/null)
  [ -z "$left" ] || { log "teardown incomplete: cgroups remain: $left"; ok=1; }
  left=$(awk -v s="$S" -v k="$KROOT0" -v k1="$KROOT1" 'index($2, s) == 1 || index($2, k) == 1 || index($2, k1) == 1 { print $2 }' /proc/self/mounts)
  [ -z "$left" ] || { log "teardown incomplete: mounts remain: $left"; ok=1; }
  [ ! -e "$S" ] || { log "teardown incomplete: $S could not be removed"; ok=1; }
  [ ! -e "$KROOT1/$MARKER" ] || { log "teardown incomplete: $KROOT1 could not be removed"; ok=1; }
  ip link show gdp-cni1 >/dev/null 2>&1 && { log "teardown incomplete: bridge gdp-cni1 remains"; ok=1; }
  select_node 0
  return $ok
}

# --- up --------------------------------------------------------------------------------

do_up() {
  if [ -d "$S" ] || [ -f "$KROOT0/$MARKER" ] || [ -f "$KROOT1/$MARKER" ] ||
    ip link show gdp-cni0 >/dev/null 2>&1 || ip link show gdp-cni1 >/dev/null 2>&1; then
    log "cleaning up what a previous cluster left in $S"
    do_down || die "could not clean up after the previous cluster (see above); fix that, then run $0 down"
  fi
  local t0=$SECONDS
  use_runtime "$(runtime_name)"
  select_node 0
  BIN=$("$root/hack/k8s-components.sh")
  RBIN=$(runtime_bin_dir)
  mkdir -p "$S" "$logs" "$run"
  echo "$RUNTIME" >"$S/runtime"
  k8s_version >/dev/null && echo "${GDP_KUBERNETES:-$(k8s_default_minor)}" >"$S/kubernetes"
  # containerd 1.7's ctr before containerd 2's, for hack/images.sh.
  export PATH="$RBIN:$BIN:$PATH"
  command -v kubectl >/dev/null || die "kubectl not found: apt-get install kubectl, or build k8s.io/kubernetes/cmd/kubectl"

  make_pki

  start etcd "$BIN/etcd" --name gdp --data-dir "$S/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "gdp=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
  healthy etcd healthy 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_RANGE" --endpoint-reconciler-type none \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false
  healthy kube-apiserver ready 90 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz"

  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$S/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$S/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$S/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=true --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$S/scheduler.kubeconfig" \
    --authentication-kubeconfig "$S/scheduler.kubeconfig" \
    --authorization-kubeconfig "$S/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false

  local snap i
  snap=$(pick_snapshotter)
  healthy kube-controller-manager healthy 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
  healthy kube-scheduler healthy 60 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"
  for ((i = 0; i < NODES; i++)); do
    select_node "$i"
    node_up "$snap"
  done
  select_node 0
  # Pods need their namespace's service account, which the controller-manager creates.
  wait_for "the controller-manager to create serviceaccount default/default" 60 \
    kc get serviceaccount default -n default || die "serviceaccount default/default missing; see $logs/kube-controller-manager.log"
  log "$NODES node(s) Ready $((SECONDS - t0))s after start (snapshotter $snap); kubeconfig $S/admin.kubeconfig"
  echo "$S/admin.kubeconfig"
}

# node_up SNAPSHOTTER: the selected node's containerd (images imported) and kubelet,
# registered and Ready.
node_up() {
  local snap=$1
  make_node_pki
  case "$RUNTIME" in
  containerd) write_containerd_config "$snap" ;;
  containerd-1.7) write_containerd17_config "$snap" ;;
  crio)
    write_crio_config "$snap"
    mount_hugetlb
    ;;
  esac
  write_cni_config
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n' "$SOCK" "$SOCK" >"$N/crictl.yaml"
  local ns=()
  if [ -n "$SFX" ]; then
    # The kubelet's device manager ignores --root-dir: its kubelet.sock is always
    # /var/lib/kubelet/device-plugins/kubelet.sock. So this node's containerd and kubelet
    # share a mount namespace of their own (held by a sleeping process), where that
    # directory is $KROOT/device-plugins. Propagation "slave": host mounts (driver roots)
    # are seen inside, and nothing mounted inside (rootfs, volumes) reaches the host; it
    # all goes away with the namespace's last process.
    mkdir -p "$KROOT/device-plugins" /var/lib/kubelet/device-plugins
    # shellcheck disable=SC2016
    # (exec -a: the holder's command line names $N, which `ours` looks for.)
    start "mntns$SFX" unshare --mount --propagation slave bash -c \
      'mount --bind "$1" /var/lib/kubelet/device-plugins && exec -a "gdp-mntns $2" sleep infinity' \
      gdp-mntns "$KROOT/device-plugins" "$N/"
    healthy "mntns$SFX" ready 10 grep -q " /var/lib/kubelet/device-plugins " "/proc/$(cat "$run/mntns$SFX.pid")/mountinfo"
    ns=(nsenter "--mount=/proc/$(cat "$run/mntns$SFX.pid")/ns/mnt" --)
  fi
  if [ "$RUNTIME" = crio ]; then
    # The images go into CRI-O's store before it starts (the sandbox image among them).
    local name ref tar refs=()
    # shellcheck disable=SC2086
    while read -r name ref tar; do refs+=("$ref=$tar"); done < <("$root/hack/images.sh" ${GDP_IMAGES:-pause busybox})
    "$RBIN/imageload" --root "$N/crio/storage" --runroot "$N/crio/run" \
      --driver "$([ "$snap" = overlayfs ] && echo overlay || echo vfs)" "${refs[@]}" ||
      die "copying the images into CRI-O's store at $N/crio/storage failed (imageload's error above)"
    start "crio$SFX" env CONTAINERS_REGISTRIES_CONF="$N/crio/etc/registries.conf" "$RBIN/crio" \
      --config "$N/crio/etc/crio.conf" --config-dir "$N/crio/etc/crio.conf.d"
    healthy "crio$SFX" serving 30 "$BIN/crictl" --config "$N/crictl.yaml" version
  else
    start "containerd$SFX" "${ns[@]}" "$RBIN/containerd" --config "$CCONF" --log-level warn
    healthy "containerd$SFX" serving 30 "$RBIN/ctr" --address "$SOCK" version
    # The sandbox image must be there before the kubelet starts its first pod.
    # shellcheck disable=SC2086
    CONTAINERD_SNAPSHOTTER=$snap "$root/hack/images.sh" -a "$SOCK" ${GDP_IMAGES:-pause busybox} >/dev/null
  fi

  write_kubelet_config
  # --cloud-provider=external: the kubelet leaves the Node's addresses to us, so they can
  # be loopback (it refuses a loopback --node-ip); set just below.
  start_kubelet
  healthy "kubelet$SFX" registered 60 kc get node "$NODE"
  kc patch node "$NODE" --subresource status --type merge \
    -p "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"127.0.0.1\"},{\"type\":\"Hostname\",\"address\":\"$NODE\"}]}}" >/dev/null ||
    die "could not set the addresses of node $NODE"
  # No cloud controller runs: lift the taint that waits for one.
  kc taint node "$NODE" node.cloudprovider.kubernetes.io/uninitialized- >/dev/null 2>&1 || true
  if ! kc wait --for=condition=Ready "node/$NODE" --timeout "${READY_TIMEOUT}s" >/dev/null; then
    kc describe node "$NODE" >&2 || true
    tail -n 30 "$logs/kubelet$SFX.log" >&2
    die "node $NODE not Ready after ${READY_TIMEOUT}s; kubelet log: $logs/kubelet$SFX.log"
  fi
}

# start_kubelet: starts the kubelet (config written by write_kubelet_config) and waits
# for its healthz; an earlier kubelet log is kept as logs/kubelet.log.prev.
start_kubelet() {
  if [ -f "$logs/kubelet$SFX.log" ]; then
    mv -f "$logs/kubelet$SFX.log" "$logs/kubelet$SFX.log.prev"
  fi
  local ns=()
  [ -z "$SFX" ] || ns=(nsenter "--mount=/proc/$(cat "$run/mntns$SFX.pid")/ns/mnt" --)
  start "kubelet$SFX" "${ns[@]}" "$BIN/kubelet" --config "$N/kubelet.yaml" --kubeconfig "$N/kubelet.kubeconfig" \
    --root-dir "$KROOT" --hostname-override "$NODE" --cloud-provider external --v 2
  healthy "kubelet$SFX" healthy 60 curl -fsS "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
}

# restart-kubelet: stops the kubelet (SIGTERM; pods keep running under containerd) and
# starts it again with the same config, then waits for the node to be Ready. The
# previous kubelet log is kept as logs/kubelet.log.prev.
do_restart_kubelet() {
  [ -f "$S/kubelet.yaml" ] || die "no cluster at $S: run $0 up first"
  local t0=$SECONDS
  BIN=$("$root/hack/k8s-components.sh")
  stop_pid kubelet
  start_kubelet
  if ! kc wait --for=condition=Ready "node/$NODE" --timeout "${READY_TIMEOUT}s" >/dev/null; then
    tail -n 30 "$logs/kubelet.log" >&2
    die "node $NODE not Ready after restarting the kubelet; kubelet log: $logs/kubelet.log"
  fi
  log "kubelet restarted; node $NODE Ready after $((SECONDS - t0))s"
}

do_status() {
  local n rc=0
  local names="etcd kube-apiserver kube-controller-manager kube-scheduler $RT kubelet"
  [ ! -d "$S/node1" ] || names+=" containerd-1 kubelet-1"
  for n in $names; do
    if pid_alive "$n"; then
      printf '%-24s running (pid %s)\n' "$n" "$(cat "$run/$n.pid")"
    else
      printf '%-24s stopped\n' "$n"
      rc=1
    fi
  done
  [ -f "$S/admin.kubeconfig" ] && kc get nodes -o wide 2>&1 || true
  return $rc
}

# One up or down at a time, whichever worktree it comes from: they share the state dir.
lock() {
  mkdir -p "$GDP_CACHE"
  exec 9>"$GDP_CACHE/local-cluster.lock"
  flock -w 300 9 || die "another hack/local-cluster.sh up/down still runs after 300s (lock $GDP_CACHE/local-cluster.lock)"
}

case "${1:-}" in
  up) lock && do_up ;;
  down) lock && do_down ;;
  status) do_status ;;
  restart-kubelet) do_restart_kubelet ;;
  env)
    echo "export KUBECONFIG=$S/admin.kubeconfig CRI_CONFIG_FILE=$S/crictl.yaml PATH=$(runtime_bin_dir):$(k8s_bin_dir):\$PATH"
    ;;
  *)
    echo "usage: $0 up|down|status|env|restart-kubelet" >&2
    exit 2
    ;;
esac
