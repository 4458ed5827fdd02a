#!/usr/bin/env bash
# Builds the pinned components of the local real-node cluster and prints their bin dir.
#
# Versions are pinned by Go modules under test/e2e/ (go.mod there for Kubernetes,
# tools/<name>/go.mod for etcd, containerd, crictl, helm and cdi-validate, whose dependency graphs
# conflict with Kubernetes'). Binaries are built with -trimpath and the linker flags
# that make them report their real version, into
#   $GDP_CACHE/k8s/<kubernetes version>/bin/
# Each binary has a stamp (module version, package, flags, Go version) beside it:
# with every stamp current a run only checks, in about a second. Debian packages the
# kubelet and containerd need at run time (runc, CNI plugins, iptables, ...) are
# installed the way hack/deps.sh installs its packages.
#
# Usage: hack/k8s-components.sh            build what is missing, print the bin dir
#        hack/k8s-components.sh --times    also print how long each build took
set -euo pipefail
source "$(dirname "$0")/lib.sh"

root=$(repo_root)
e2e="$root/test/e2e"

packages=(
  runc containernetworking-plugins iptables conntrack socat ethtool iproute2
  util-linux mount kmod openssl busybox-static curl
)
install_debian_packages "${packages[@]}"

command -v go >/dev/null || die "go not found: install Go 1.26 or newer (the modules under test/e2e need it)"
# Never download a toolchain behind the user's back: a too-old Go fails here with a clear error.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

# modver DIR MODULE: the version DIR/go.mod requires of MODULE.
modver() {
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1/go.mod"
}

K8S_VERSION=$(modver "$e2e" k8s.io/kubernetes)
[ -n "$K8S_VERSION" ] || die "no k8s.io/kubernetes requirement in $e2e/go.mod"
ETCD_VERSION=$(modver "$e2e/tools/etcd" go.etcd.io/etcd/server/v3)
CONTAINERD_VERSION=$(modver "$e2e/tools/containerd" github.com/containerd/containerd/v2)
CRICTL_VERSION=$(modver "$e2e/tools/crictl" sigs.k8s.io/cri-tools)
HELM_VERSION=$(modver "$e2e/tools/helm" helm.sh/helm/v3)

bin="$GDP_CACHE/k8s/$K8S_VERSION/bin"
mkdir -p "$bin"

show_times=0
[ "${1:-}" = "--times" ] && show_times=1

# build NAME MODULE_DIR PACKAGE VERSION LDFLAGS [TAGS]
build() {
  local name=$1 dir=$2 pkg=$3 version=$4 ldflags=$5 tags=${6:-}
  local stamp="$pkg@$version tags=$tags ldflags=$ldflags $(go env GOVERSION)"
  if [ -x "$bin/$name" ] && [ -f "$bin/.$name.stamp" ] && [ "$(cat "$bin/.$name.stamp")" = "$stamp" ]; then
    return 0
  fi
  log "building $name $version (cold on 2 cores: minutes)"
  local start=$SECONDS
  (cd "$dir" && nice -n 19 go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg") ||
    die "go build of $pkg failed (module $dir); see the compiler output above"
  mv -f "$bin/.$name.tmp" "$bin/$name"
  printf '%s' "$stamp" >"$bin/.$name.stamp"
  local took=$((SECONDS - start))
  log "built $name in ${took}s"
  ((show_times)) && printf '%s %ss\n' "$name" "$took" >&2
  return 0
}

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
k8s_ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  k8s_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
for c in kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$c" "$e2e" "k8s.io/kubernetes/cmd/$c" "$K8S_VERSION" "$k8s_ld"
done

build etcd "$e2e/tools/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" \
  "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"

ctd_ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
ctd_ld+=" -X github.com/containerd/containerd/v2/version.Revision=$CONTAINERD_VERSION"
ctd_ld+=" -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
# no_btrfs: the btrfs snapshotter needs cgo and libbtrfs headers, and this machine has no btrfs.
for c in containerd containerd-shim-runc-v2 ctr; do
  build "$c" "$e2e/tools/containerd" "github.com/containerd/containerd/v2/cmd/$c" \
    "$CONTAINERD_VERSION" "$ctd_ld" no_btrfs
done

build crictl "$e2e/tools/crictl" sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" \
  "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"

build helm "$e2e/tools/helm" helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

# The CDI spec validator of the real-node suite: our own main over the CDI project's
# library; its stamp follows the library version and the source.
CDI_VERSION=$(modver "$e2e/tools/cdi-validate" tags.cncf.io/container-device-interface)
build cdi-validate "$e2e/tools/cdi-validate" . \
  "$CDI_VERSION-$(sha256sum "$e2e/tools/cdi-validate/main.go" | cut -c1-12)" "-s -w"

echo "$bin"
