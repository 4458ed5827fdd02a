# Sourced by run.sh before the cluster starts: the chart renders NVIDIA's chart
# values with NVIDIA's meaning, and fails on ones it cannot honour, naming them.
# C1-C9; uses run.sh's check/pass/fail and helm from the pinned components.

chart_helm=$(command -v helm || echo "$(hack/k8s-components.sh)/helm")
# Its output, errors included; a refused install is a result here, not a failure.
chart_render() { "$chart_helm" template t "$CHART" "$@" 2>&1 || true; }
chart_has() { # NAME RENDERED LINE...
  local name=$1 out=$2 line missing=""
  shift 2
  for line in "$@"; do grep -qF -- "$line" <<<"$out" || missing+=" [$line]"; done
  if [ -z "$missing" ]; then pass "$name"; else fail "$name: missing$missing"; fi
}

out=$(chart_render --set migStrategy=mixed,failOnInitError=false,deviceListStrategy=cdi-cri \
  --set deviceIDStrategy=index,nvidiaDriverRoot=/run/nvidia/driver,gdrcopyEnabled=true \
  --set gdsEnabled=true,mofedEnabled=true,compatWithCPUManager=true,runtimeClassName=nvidia \
  --set priorityClassName=high,gfd.enabled=true)
chart_has "C1 NVIDIA's flag values become the daemon's flags" "$out" \
  "- --mig-strategy=mixed" "- --fail-on-init-error=false" "- --device-list-strategy=cdi-cri" \
  "- --device-id-strategy=index" "- --driver-root=/run/nvidia/driver" "path: /run/nvidia/driver" \
  "- --gdrcopy-enabled=true" "- --gds-enabled=true" "- --mofed-enabled=true" \
  "- --pass-device-specs=true" "runtimeClassName: nvidia" "priorityClassName: high" \
  "- --node-labels=true"

out=$(chart_render --set config.name=my-configs,config.default=small \
  --set-json 'config.fallbackStrategies=["named","empty"]')
chart_has "C2 config.name: an existing ConfigMap of named configs, watched, not created" "$out" \
  "- --config-map=default/my-configs" "- --default-config=small" \
  "- --fallback-strategies=named,empty" 'resourceNames: ["my-configs"]'
if grep -q "^  name: my-configs" <<<"$out"; then fail "C2 the chart created config.name's ConfigMap"; fi

out=$(chart_render --set-json 'config={"map":{"ts4":"version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 4}]}}\n"},"default":"ts4"}')
chart_has "C3 config.map: the named configs are created and picked by the node label" "$out" \
  "name: t-gpu-device-plugin-configs" "  ts4: |" "- --config-map=default/t-gpu-device-plugin-configs" \
  "- --default-config=ts4"

out=$(chart_render --set config.nmae=x)
chart_has "C4 an unknown config.* key fails the install, naming it" "$out" \
  "config.nmae is not a setting of NVIDIA's chart nor of this one"
out=$(chart_render --set gfd.enabled=true,nodeLabels.enabled=false)
chart_has "C4 gfd.enabled with the labeller off fails, saying why" "$out" \
  "gfd.enabled=true but nodeLabels.enabled=false"
out=$(chart_render --set gfd.enabled=false)
chart_has "C4 gfd.enabled=false turns the GFD labels off" "$out" "- --node-labels=false"

out=$(chart_render --set metrics.tls.enabled=true,metrics.auth.enabled=true,metrics.serviceMonitor.enabled=true \
  --set nodeLabels.enabled=false --set-json 'metrics.auth.readers=[{"kind":"ServiceAccount","name":"prom","namespace":"mon"}]')
chart_has "C5 metrics.auth: the flags, the reviewer's and the reader's RBAC, the monitor's token" "$out" \
  "- --metrics-auth" "- --metrics-auth-cache-ttl=2m" "name: system:auth-delegator" \
  'nonResourceURLs: ["/metrics", "/allocations", "/inventory"]' "name: prom" \
  "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token" \
  "automountServiceAccountToken: true"
out=$(chart_render --set metrics.auth.enabled=true)
chart_has "C5 metrics.auth without metrics.tls fails, saying why" "$out" \
  "metrics.auth.enabled=true needs metrics.tls.enabled=true"

# C6: the plugin's own container asks the NVIDIA runtime for every GPU's device nodes (NVML
# opens them), as NVIDIA's chart does; nothing else of the driver.
out=$(chart_render)
env_of() { grep -A1 -- "- name: $1\$" <<<"$out" | sed -n 's/^ *value: //p' | head -1; }
check "C6 the plugin container's NVIDIA_VISIBLE_DEVICES and NVIDIA_DRIVER_CAPABILITIES" "all utility" \
  "$(env_of NVIDIA_VISIBLE_DEVICES) $(env_of NVIDIA_DRIVER_CAPABILITIES)"

# C8: image.digest pins the image by digest (the plugin and the MPS agent), the tag ignored.
d=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
out=$(chart_render --set image.repository=registry.example.com/gdp --set image.digest=$d --set mps.enabled=true)
check "C8 image.digest: every image is repository@digest" "2 x registry.example.com/gdp@$d" \
  "$(grep -o 'image: .*' <<<"$out" | sort | uniq -c | awk '{ print $1 " x " $3 }' | tr -d '"')"

# C9: distribution presets: the pod-resources directory follows the kubelet's root dir, the
# device-plugin directory stays where the kubelet listens, and the runtime's config is
# mounted for the doctor; an unknown distribution fails, naming the accepted ones.
c9() { # DISTRIBUTION POD_RESOURCES CONTAINERD_CONFIG
  local out
  out=$(chart_render --set distribution="$1")
  chart_has "C9 distribution=$1: pod-resources $2, device plugins /var/lib/kubelet/device-plugins, containerd config $3" "$out" \
    "path: $2" "- --plugin-directory=/var/lib/kubelet/device-plugins" "path: $(dirname "$3")" \
    "- --containerd-config=/host/containerd/$(basename "$3")" "mountPath: /host/containerd"
}
c9 kubeadm /var/lib/kubelet/pod-resources /etc/containerd/config.toml
c9 k3s /var/lib/kubelet/pod-resources /var/lib/rancher/k3s/agent/etc/containerd/config.toml
c9 rke2 /var/lib/kubelet/pod-resources /var/lib/rancher/rke2/agent/etc/containerd/config.toml
c9 microk8s /var/snap/microk8s/common/var/lib/kubelet/pod-resources /var/snap/microk8s/current/args/containerd.toml
out=$(chart_render)
check "C9 no distribution: no containerd config mounted" 0 "$(grep -c 'host/containerd' <<<"$out" || true)"
out=$(chart_render --set distribution=openshift)
chart_has "C9 an unknown distribution fails, naming the accepted ones" "$out" \
  'distribution="openshift" is not one of kubeadm, k3s, rke2, microk8s'
