# The release scenarios against the real node, sourced by test/e2e/run.sh last (it defines
# pass/fail/check and brings the cluster up):
#   P1 a registry (the CNCF distribution server) on 127.0.0.1 over TLS holds two releases of
#      this tree (hack/publish.sh): a previous one and the current one (make image's index,
#      both platforms), each image and chart signed with a key made for the test and each
#      platform image with its SBOM attested. cosign verifies them with the key, refuses them
#      with another key, and the attested SBOM is make image's.
#   P2 the previous release installed as a user does: cosign verify, then
#      `helm install oci://...@<chart digest>` with image.digest; containerd pulls the plugin
#      by digest from the registry (hosts.toml with the registry's CA).
#   P3 `helm upgrade` to the current release and P4 `helm rollback` to the previous one, on
#      a node with whole, time-shared and MIG GPUs (the mixed profile: two whole A100s, two
#      in MIG mode, 1g.10gb time-sliced x2) with a pod of each kind running: no pod is
#      restarted or loses its devices, a new pod gets a GPU no one holds (and one more waits),
#      the node's labels never change and /metrics keeps the pods' GPU series (its gap, the
#      plugin's restart, is printed).
# shellcheck shell=bash

rel_dir=$(mktemp -d)
RELEASE_BIN=$(hack/release-tools.sh | tail -n 1)
COSIGN=$RELEASE_BIN/cosign
registry_env=$(hack/local-registry.sh up 2>"$rel_dir/registry.err") ||
  die "the local registry did not start: $(tail -n 3 "$rel_dir/registry.err")"
eval "$registry_env"
cosign() { SSL_CERT_FILE=$GDP_REGISTRY_CA "$COSIGN" "$@"; } # trusting the registry's CA
cosign_verify() { # KEY REF
  cosign verify --key "$1" --insecure-ignore-tlog=true "$2" >"$rel_dir/verify.out" 2>&1
}

# same NAME BEFORE AFTER: passes when the two texts are the same, naming how many lines;
# else fails with the lines that differ.
same() {
  if [ "$2" = "$3" ]; then
    pass "$1 ($(grep -c . <<<"$2") lines the same)"
  else
    fail "$1: these differ: $(diff <(echo "$2") <(echo "$3") | grep '^[<>]' | head -6 | cut -c1-220 | tr '\n' ' ')"
  fi
}

# --- P1: two releases in the registry, signed, with SBOMs --------------------------------
# The current release: make image's (both platforms) when it was built from this commit,
# else the amd64 image alone, built now.
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
current=$E2E_ROOT/build/image
if [ "$(jq -r '.manifests[0].digest' "$current/gpu-device-plugin.oci/index.json" 2>/dev/null | sed 's/^sha256://' |
  xargs -I{} jq -r '.annotations["org.opencontainers.image.revision"]' "$current/gpu-device-plugin.oci/blobs/sha256/{}" 2>/dev/null)" != "$(git rev-parse HEAD)" ]; then
  current=$rel_dir/current
  hack/image.sh --platforms amd64 --out "$current" >/dev/null 2>"$rel_dir/image.err" ||
    die "hack/image.sh --platforms amd64 failed: $(tail -n 3 "$rel_dir/image.err")"
fi
hack/image.sh --platforms amd64 --out "$rel_dir/previous" --version "$version-previous" >/dev/null 2>"$rel_dir/image.err" ||
  die "hack/image.sh --version $version-previous failed: $(tail -n 3 "$rel_dir/image.err")"
# The commands of docs/release.md, in the test's directory: a key pair, the releases
# published (hack/publish.sh --out writes what the install needs).
export COSIGN_PASSWORD="" # the test's key has none
(cd "$rel_dir" && cosign generate-key-pair >/dev/null 2>&1 && mkdir other && cd other && cosign generate-key-pair >/dev/null 2>&1)
publish() { # NAME LAYOUT_DIR
  (cd "$rel_dir" && "$E2E_ROOT"/hack/publish.sh --registry "$GDP_REGISTRY" --key cosign.key --out "$1.env" \
    --ca-file "$GDP_REGISTRY_CA" --layout "$2" >"$1.log" 2>&1)
}
if publish previous "$rel_dir/previous" && publish current "$current"; then
  # shellcheck disable=SC1091
  prev_image=$(source "$rel_dir/previous.env" && echo "$IMAGE_DIGEST") prev_chart=$(source "$rel_dir/previous.env" && echo "$CHART_REF")
  # shellcheck disable=SC1091
  cur_image=$(source "$rel_dir/current.env" && echo "$IMAGE_DIGEST") cur_chart=$(source "$rel_dir/current.env" && echo "$CHART_REF")
  pass "P1 two releases pushed to $GDP_REGISTRY: previous image $prev_image, current image $cur_image and their charts"
else
  fail "P1 hack/publish.sh: $(tail -n 3 "$rel_dir"/*.log | tr '\n' ' ')"
fi
image_repo=$GDP_REGISTRY/gpu-device-plugin
if [ -n "${cur_image:-}" ]; then
  check "P1 the registry's index is make image's" "$(jq -r '.manifests[0].digest' "$current/gpu-device-plugin.oci/index.json")" "$cur_image"
  platforms=$(skopeo inspect --raw --cert-dir "$GDP_REGISTRY_CERT_DIR" "docker://$image_repo@$cur_image" |
    jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(",")')
  check "P1 the registry's index has the platforms of the layout" \
    "$(jq -r '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort | join(",")' \
      "$current/gpu-device-plugin.oci/blobs/sha256/${cur_image#sha256:}")" "$platforms"
  for ref in "$image_repo@$cur_image" "${cur_chart#oci://}" "$image_repo@$prev_image" "${prev_chart#oci://}"; do
    if cosign_verify "$rel_dir/cosign.pub" "$ref"; then
      pass "P1 cosign verify --key cosign.pub $ref"
    else
      fail "P1 cosign verify $ref: expected the test key's signature, saw: $(tail -n 2 "$rel_dir/verify.out")"
    fi
  done
  if cosign_verify "$rel_dir/other/cosign.pub" "$image_repo@$cur_image"; then
    fail "P1 cosign verify with another key: expected a refusal, it passed"
  else
    pass "P1 cosign verify with another key refuses the image: $(grep -m 1 '^Error' "$rel_dir/verify.out" | cut -c1-120)"
  fi
  amd64=$(skopeo inspect --raw --cert-dir "$GDP_REGISTRY_CERT_DIR" "docker://$image_repo@$cur_image" |
    jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest')
  if (cd "$rel_dir" && cosign verify-attestation --key cosign.pub --insecure-ignore-tlog=true --type spdxjson "$image_repo@$amd64" \
    >attestation.out 2>/dev/null); then
    attested=$(head -n 1 "$rel_dir/attestation.out" | jq -r '.payload' | base64 -d | jq -r '.predicate.packages[] | .name + "=" + .versionInfo' | sort)
    same "P1 the attested SBOM of linux/amd64 is make image's: its packages and versions" \
      "$(jq -r '.packages[] | .name + "=" + .versionInfo' "$current/sbom-amd64.spdx.json" | sort)" "$attested"
  else
    fail "P1 cosign verify-attestation --type spdxjson on the amd64 image: $(tail -n 2 "$rel_dir/attestation.out")"
  fi
fi

# P2-P4 need both releases in the registry.
release_scenarios() {
# --- P2: the previous release installed from the registry, verified first ---------------
# A node with every kind of GPU: the mixed profile (GPUs 1 and 3 whole, 0 and 2 in MIG mode).
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
wait_until 60 sh -c "! kubectl -n $NS get pods -l app.kubernetes.io/name=gpu-device-plugin --field-selector spec.nodeName=$NODE --no-headers 2>/dev/null | grep -q ."
delete_test_pods
rm -rf "$GPUROOT"
"$GPUSIM" root "$GPUROOT" --profile mixed --library "$NVML_LIB" >/dev/null
# The release's values: the e2e node's (lib.sh), the chart's pull policy, this config.
{
  e2e_values "$NODE" "$GPUROOT" /var/lib/kubelet "" 9101 | sed '/^image: /d; /^config: |$/,/^    probeInterval: 1s$/d'
  cat <<'EOF'
config: |
  version: v1
  flags:
    migStrategy: mixed
  sharing:
    timeSlicing:
      resources:
        - name: nvidia.com/mig-1g.10gb
          replicas: 2
EOF
} >"$rel_dir/values.yaml"
# install_release install|upgrade ENV_FILE: docs/release.md's verify-then-install, with the
# release's env (hack/publish.sh --out): cosign verifies the image and the chart, then helm
# installs or upgrades to them by digest (the registry's CA given to helm for this test).
install_release() {
  (
    cd "$rel_dir" || exit 1
    # shellcheck disable=SC1090
    source "$2"
    cosign verify --key cosign.pub --insecure-ignore-tlog=true "$IMAGE_REPOSITORY@$IMAGE_DIGEST" || exit 1
    cosign verify --key cosign.pub --insecure-ignore-tlog=true "${CHART_REF#oci://}" || exit 1
    case "$1" in
    install) helm install gpu-device-plugin "$CHART_REF" --namespace kube-system -f values.yaml \
      --set image.repository="$IMAGE_REPOSITORY" --set image.digest="$IMAGE_DIGEST" --ca-file "$GDP_REGISTRY_CA" ;;
    upgrade) helm upgrade gpu-device-plugin "$CHART_REF" --namespace kube-system -f values.yaml \
      --set image.repository="$IMAGE_REPOSITORY" --set image.digest="$IMAGE_DIGEST" --ca-file "$GDP_REGISTRY_CA" ;;
    esac
  ) >"$rel_dir/helm.out" 2>&1
}
plugin_image() { kc -n "$NS" get pod "$(plugin_pod)" -o jsonpath='{.spec.containers[0].image} {.status.containerStatuses[0].imageID}' 2>/dev/null; }
node_serves() { # the mixed node's resources, capacity and allocatable
  resource_is nvidia.com/gpu 2 && resource_is nvidia.com/mig-3g.40gb 1 && resource_is nvidia.com/mig-2g.20gb 1 &&
    resource_is nvidia.com/mig-1g.10gb 18
}
if [ -n "${prev_chart:-}" ]; then
  if install_release install "$rel_dir/previous.env" && wait_until 120 node_serves; then
    pass "P2 helm install $prev_chart (verified first): the node serves gpu=2, mig-3g.40gb=1, mig-2g.20gb=1, mig-1g.10gb=18 (9 x 2)"
  else
    fail "P2 helm install of the previous release: expected the mixed node's resources, saw $(kc get node "$NODE" -o jsonpath='{.status.allocatable}') ($(tail -n 2 "$rel_dir/helm.out" | tr '\n' ' '); plugin: $(kc -n "$NS" get pods -l app.kubernetes.io/name=gpu-device-plugin --no-headers 2>&1 | head -2))"
  fi
  check "P2 the plugin runs the previous image by digest, pulled from the registry" \
    "$image_repo@$prev_image $image_repo@$prev_image" "$(plugin_image)"
  if crictl images --digests 2>/dev/null | grep "^$image_repo " >/dev/null; then
    pass "P2 containerd holds the image pulled from $image_repo"
  else
    fail "P2 containerd's images: expected $image_repo, saw: $(crictl images 2>&1 | grep -v localhost/gdp | tr '\n' ';')"
  fi
else
  fail "P2 no previous release to install (P1 failed)"
fi

# One pod of each kind: a whole GPU, a MIG device, two time-shared MIG devices.
gpu_pod full 1
gpu_pod mig 1 nvidia.com/mig-3g.40gb
gpu_pod shared-a 1 nvidia.com/mig-1g.10gb
gpu_pod shared-b 1 nvidia.com/mig-1g.10gb
rel_pods="full mig shared-a shared-b"
all_ready() { local p; for p in $rel_pods; do pod_logged "$p" READY || return 1; done; }
wait_until 90 all_ready || fail "P2 the GPU pods: expected $rel_pods Running, saw $(kc -n "$TNS" get pods --no-headers 2>&1 | awk '{print $1 "=" $3}' | tr '\n' ' ')"
# What must not change across an upgrade: each pod (uid, container, restarts, phase) and
# the devices the kubelet holds for it.
pods_state() {
  local p
  for p in $rel_pods; do
    kc -n "$TNS" get pod "$p" -o jsonpath='{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.phase}{"\n"}' 2>&1
  done
  "$PODRESOURCES" 2>/dev/null | grep "^$TNS/" | sort
}
# Every device the kubelet gave a pod, once: none is handed out twice.
devices_unique() { "$PODRESOURCES" 2>/dev/null | grep "^$TNS/" | awk '{ for (i = 3; i <= NF; i++) print $i }' | sort | uniq -d; }
gpu_series() { # the GPU series of /metrics (names and labels) of the pods' GPUs
  curl -sf -m 2 http://127.0.0.1:9101/metrics | grep '^gdp_gpu_[a-z_]*{.*pod="' | sed 's/} .*/}/' | sort
}
series_of_all_pods() {
  local p series
  series=$(gpu_series)
  for p in $rel_pods; do grep "pod=\"$p\"" <<<"$series" >/dev/null || return 1; done
}
has_full_series() { gpu_series | grep 'pod="full"' >/dev/null; }
wait_until 30 has_full_series || fail "P2 /metrics: expected series of pod full's GPU, saw $(gpu_series | wc -l) pod series"
labels_of_node() { kc get node "$NODE" -o json 2>/dev/null | jq -c '.metadata.labels | with_entries(select(.key | startswith("nvidia.com/")))'; }

# monitor FILE: until FILE.stop exists, every half second: the node's nvidia.com/ labels
# ("L <json>") and whether /metrics answered with pod full's GPU series ("M <seconds> 0|1").
monitor() {
  while [ ! -e "$1.stop" ]; do
    echo "L $(labels_of_node)"
    echo "M $(date +%s.%N) $(gpu_series | grep -c 'pod="full"' | awk '{ print ($1 > 0) }')"
    sleep 0.5
  done >"$1"
}
# transition NAME VERB IMAGE_DIGEST COMMAND...: runs COMMAND with the pods running and checks
# what must hold across it.
transition() {
  local name=$1 verb=$2 digest=$3 before series_before old mon=$rel_dir/monitor-$1 t
  shift 3
  # Every pod's GPU on /metrics first (the sampler attributes a new pod within a round).
  wait_until 30 series_of_all_pods || fail "$name /metrics before the $verb: expected series of each of $rel_pods"
  before=$(pods_state)
  series_before=$(gpu_series)
  old=$(plugin_pod)
  monitor "$mon" &
  local mon_pid=$!
  t=$SECONDS
  if "$@" >"$rel_dir/helm.out" 2>&1 && wait_until 120 plugin_replaced "$old" && wait_until 60 node_serves; then
    pass "$name $verb: the plugin replaced and the node's resources back after $((SECONDS - t))s"
  else
    fail "$name $verb: expected a new ready plugin pod and the node's resources, saw pod '$(plugin_pod)' and $(kc get node "$NODE" -o jsonpath='{.status.allocatable}') ($(tail -n 2 "$rel_dir/helm.out" | tr '\n' ' '))"
  fi
  # The series come back with the sampler's next round (pod attribution from pod-resources).
  same_series() { [ "$(gpu_series)" = "$series_before" ]; }
  wait_until 30 same_series || true
  touch "$mon.stop"
  wait "$mon_pid" 2>/dev/null || true
  check "$name the plugin runs $verb's image" "$image_repo@$digest $image_repo@$digest" "$(plugin_image)"
  same "$name no GPU pod disturbed: each pod's uid, container, restarts (0), phase (Running) and devices" "$before" "$(pods_state)"
  same "$name /metrics has the pods' GPU series as before" "$series_before" "$(gpu_series)"
  local polls distinct gap
  polls=$(grep -c '^L ' "$mon" || true)
  distinct=$(grep '^L ' "$mon" | sort -u | wc -l)
  if [ "$distinct" = 1 ] && ((polls >= 4)) && [ "$(grep '^L ' "$mon" | head -1)" = "L $(labels_of_node)" ]; then
    pass "$name the node's nvidia.com/ labels never changed ($polls reads through the $verb)"
  else
    fail "$name labels: expected one label set throughout, saw $distinct in $polls reads: $(grep '^L ' "$mon" | sort | uniq -c | head -3 | tr '\n' ' ')"
  fi
  # The longest time /metrics went without pod full's GPU: the plugin's restart.
  gap=$(awk '$1 == "M" { if ($3 == 1) { if (last && $2 - last > g) g = $2 - last; last = $2 } } END { printf "%.1f", g }' "$mon")
  if grep '^M .* 1$' "$mon" | tail -1 | grep . >/dev/null; then
    pass "$name /metrics served pod full's GPU before and after; the longest gap was ${gap}s (the plugin's restart)"
  else
    fail "$name /metrics: expected pod full's GPU series at the end, saw: $(tail -n 2 "$mon" | tr '\n' ' ')"
  fi
  local dup
  dup=$(devices_unique | tr '\n' ' ')
  check "$name devices held by two pods" none "${dup:-none}"
}

# --- P3: helm upgrade to the current release ------------------------------------------
transition P3 upgrade "${cur_image:-}" install_release upgrade "$rel_dir/current.env"
# A new whole-GPU pod gets the other whole GPU; one more finds none.
gpu_pod full2 1
if wait_until 60 pod_logged full2 READY; then
  full_gpu=$(pod_nvd full) full2_gpu=$(pod_nvd full2)
  if [ -n "$full2_gpu" ] && [ "$full2_gpu" != "$full_gpu" ] && gpusim show | awk '$1 == 1 || $1 == 3 { print $2 }' | grep -x "$full2_gpu" >/dev/null; then
    pass "P3 a new 1-GPU pod after the upgrade gets the other whole GPU ($full2_gpu, pod full holds $full_gpu)"
  else
    fail "P3 new 1-GPU pod: expected the whole GPU pod full does not hold, saw '$full2_gpu' (full holds '$full_gpu')"
  fi
else
  fail "P3 a new 1-GPU pod after the upgrade: expected Running, saw $(pod_phase full2)"
fi
gpu_pod full3 1
unschedulable() { kc -n "$TNS" get events --field-selector involvedObject.name=full3,reason=FailedScheduling -o jsonpath='{.items[*].message}' 2>/dev/null | grep 'Insufficient nvidia.com/gpu' >/dev/null; }
if wait_until 30 unschedulable && [ "$(pod_phase full3)" = Pending ]; then
  pass "P3 a third 1-GPU pod waits: Insufficient nvidia.com/gpu (both whole GPUs held)"
else
  fail "P3 a third 1-GPU pod: expected Pending with Insufficient nvidia.com/gpu, saw $(pod_phase full3)"
fi
rel_pods+=" full2"

# --- P4: helm rollback to the previous release -----------------------------------------
transition P4 rollback "${prev_image:-}" helm rollback gpu-device-plugin 1 --namespace kube-system
check "P4 the third 1-GPU pod still waits after the rollback" Pending "$(pod_phase full3)"
check "P4 helm history: install, upgrade, rollback" "deployed: 3 Rollback to 1" \
  "$(helm history gpu-device-plugin --namespace kube-system -o json 2>/dev/null | jq -r '.[-1] | "\(.status): \(.revision) \(.description)"')"
}
if [ -n "${cur_image:-}" ] && [ -n "${prev_image:-}" ]; then
  release_scenarios
else
  fail "P2-P4 not run: P1 did not publish both releases"
fi

delete_test_pods
helm uninstall "$RELEASE" --namespace "$NS" --wait >/dev/null 2>&1 || true
hack/local-registry.sh down
rm -rf "$rel_dir"
unset COSIGN_PASSWORD
