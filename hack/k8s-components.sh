#!/usr/bin/env bash
# Builds the pinned components of the local real-node cluster and prints their bin dir.
#
# Versions are pinned by Go modules under test/e2e/ (go.mod there for the newest Kubernetes,
# kubernetes/<minor>/go.mod for each older minor, tools/<name>/go.mod for etcd, containerd,
# crictl, helm, cdi-validate and the other runtimes, whose dependency graphs conflict with
# Kubernetes'). Binaries are built with -trimpath and the linker flags that make them
# report their real version, into
#   $GDP_CACHE/k8s/<kubernetes version>/bin/   (the tools other than Kubernetes' are built
#                                               once, into the newest's, and linked)
#   $GDP_CACHE/runtimes/<runtime>-<version>/bin/  (containerd 1.7, CRI-O: hack/lib.sh runtime_bin_dir)
# GDP_KUBERNETES picks the minor (default the newest) and GDP_RUNTIME the container runtime
# (containerd, containerd-1.7 or crio; default containerd), as for hack/local-cluster.sh.
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

# (conmon, jq and libseccomp-dev are CRI-O's, installed here too so that a build of it in the
# background, as make e2e runs one, never runs apt.)
packages=(
  runc containernetworking-plugins iptables conntrack socat ethtool iproute2
  util-linux mount kmod openssl busybox-static curl conmon jq libseccomp-dev pkg-config
)
install_debian_packages "${packages[@]}"

command -v go >/dev/null || die "go not found: install Go 1.26 or newer (the modules under test/e2e need it)"
# Never download a toolchain behind the user's back: a too-old Go fails here with a clear error.
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

k8s_mod=$(k8s_module_dir)
K8S_VERSION=$(k8s_version)
[ -n "$K8S_VERSION" ] || die "no k8s.io/kubernetes requirement in $k8s_mod/go.mod"
RUNTIME=$(runtime_name)
ETCD_VERSION=$(go_mod_require "$e2e/tools/etcd" go.etcd.io/etcd/server/v3)
CONTAINERD_VERSION=$(go_mod_require "$e2e/tools/containerd" github.com/containerd/containerd/v2)
CRICTL_VERSION=$(go_mod_require "$e2e/tools/crictl" sigs.k8s.io/cri-tools)
HELM_VERSION=$(go_mod_require "$e2e/tools/helm" helm.sh/helm/v3)

bin="$GDP_CACHE/k8s/$K8S_VERSION/bin"
# The tools other than Kubernetes' own go to the newest Kubernetes' bin dir, once.
tools_bin="$GDP_CACHE/k8s/$(go_mod_require "$e2e" k8s.io/kubernetes)/bin"
mkdir -p "$bin" "$tools_bin"
out=$bin

show_times=0
[ "${1:-}" = "--times" ] && show_times=1

# build NAME MODULE_DIR PACKAGE VERSION LDFLAGS [TAGS]: into $out.
build() {
  local name=$1 dir=$2 pkg=$3 version=$4 ldflags=$5 tags=${6:-}
  local stamp="$pkg@$version tags=$tags ldflags=$ldflags $(go env GOVERSION)"
  if [ -x "$out/$name" ] && [ -f "$out/.$name.stamp" ] && [ "$(cat "$out/.$name.stamp")" = "$stamp" ]; then
    return 0
  fi
  log "building $name $version (cold on 2 cores: minutes)"
  local start=$SECONDS
  (cd "$dir" && nice -n 19 go build -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$out/.$name.tmp" "$pkg") ||
    die "go build of $pkg failed (module $dir); see the compiler output above"
  mv -f "$out/.$name.tmp" "$out/$name"
  printf '%s' "$stamp" >"$out/.$name.stamp"
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
  build "$c" "$k8s_mod" "k8s.io/kubernetes/cmd/$c" "$K8S_VERSION" "$k8s_ld"
done
out=$tools_bin

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
CDI_VERSION=$(go_mod_require "$e2e/tools/cdi-validate" tags.cncf.io/container-device-interface)
build cdi-validate "$e2e/tools/cdi-validate" . \
  "$CDI_VERSION-$(sha256sum "$e2e/tools/cdi-validate/main.go" | cut -c1-12)" "-s -w"

# An older Kubernetes: the same tools, hard-linked beside its components.
if [ "$bin" != "$tools_bin" ]; then
  for t in etcd containerd containerd-shim-runc-v2 ctr crictl helm cdi-validate; do
    ln -f "$tools_bin/$t" "$bin/$t"
    cp -f "$tools_bin/.$t.stamp" "$bin/.$t.stamp"
  done
fi

out=$(runtime_bin_dir)
mkdir -p "$out"
rt_mod=$(runtime_module_dir)
RUNTIME_VERSION=$(runtime_version)
case "$RUNTIME" in
containerd-1.7)
  ctd_ld="-s -w -X github.com/containerd/containerd/version.Version=$RUNTIME_VERSION"
  ctd_ld+=" -X github.com/containerd/containerd/version.Revision=$RUNTIME_VERSION"
  ctd_ld+=" -X github.com/containerd/containerd/version.Package=github.com/containerd/containerd"
  for c in containerd containerd-shim-runc-v2 ctr; do
    build "$c" "$rt_mod" "github.com/containerd/containerd/cmd/$c" "$RUNTIME_VERSION" "$ctd_ld" no_btrfs
  done
  ;;
crio)
  # Debian's conmon monitors each container, and runc (as for containerd) runs it; jq is for
  # local-cluster's runc wrapper (all installed above). CRI-O needs cgo for seccomp
  # (libseccomp); its image library verifies signatures in Go (containers_image_openpgp) and
  # has no btrfs or device-mapper here.
  crio_tags="containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs"
  crio_tags+=" exclude_graphdriver_devicemapper seccomp"
  crio_ld="-s -w -X github.com/cri-o/cri-o/internal/version.buildCommit=$RUNTIME_VERSION"
  crio_ld+=" -X github.com/cri-o/cri-o/internal/version.buildDate=1970-01-01T00:00:00Z"
  CGO_ENABLED=1 build crio "$rt_mod" github.com/cri-o/cri-o/cmd/crio "$RUNTIME_VERSION" "$crio_ld" "$crio_tags"
  CGO_ENABLED=1 build imageload "$rt_mod" ./imageload \
    "$RUNTIME_VERSION-$(sha256sum "$rt_mod/imageload/main.go" | cut -c1-12)" "-s -w" "$crio_tags"
  # pinns (CRI-O's namespace pinner) is C in the same module: built as its Makefile does.
  src="$(cd "$rt_mod" && go mod download -json github.com/cri-o/cri-o | jq -r .Dir)/pinns/src"
  stamp="pinns $RUNTIME_VERSION $(gcc -dumpversion)"
  if ! [ -x "$out/pinns" ] || [ "$(cat "$out/.pinns.stamp" 2>/dev/null)" != "$stamp" ]; then
    gcc -std=c99 -Os -Wall -Werror -Wextra -static -o "$out/.pinns.tmp" "$src"/*.c ||
      die "building pinns from $src failed (needs gcc and libc6-dev)"
    mv -f "$out/.pinns.tmp" "$out/pinns"
    printf '%s' "$stamp" >"$out/.pinns.stamp"
  fi
  ;;
esac

echo "$bin"
