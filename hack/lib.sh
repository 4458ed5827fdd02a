# Shared helpers for the scripts in hack/. Source it; it defines functions only.
# shellcheck shell=bash

# Where heavy, version-keyed downloads and builds live, outside the repo.
GDP_CACHE="${GDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-device-plugin}"

# The NVML header of each driver branch, from NVIDIA's PyPI packages (the header of the CUDA
# toolkit release that ships with the branch's drivers): BRANCH PACKAGE VERSION WHEEL_SHA256.
# The build compiles against the newest; the simulator's library for each branch exports
# exactly the functions that branch's header declares (docs/simulator.md).
NVML_BRANCHES=(
  "r535 nvidia-nvml-dev-cu12 12.2.140 5ddaace17f8f38112e20209df738499bbfaac895f40c7f77456242375f6c4bbd"
  "r550 nvidia-nvml-dev-cu12 12.4.127 f3d070140734992f018d46b5fc1663495898637534b94a87cec64bf12bdc584c"
  "r570 nvidia-nvml-dev-cu12 12.8.90 051ea91b21d08447d1c6bb0f6f7b3c50339e79d45ef60ae1f71ac800ca0b2f6e"
  "r580 nvidia-nvml-dev 13.0.87 082871368275cf6620fc900f55d8eaf2563b263a38a00a5168e9650bce963ba1"
)
# The header the build compiles against: the newest branch's.
NVML_DEV_VERSION="13.0.87"
NVML_INCLUDE_DIR="$GDP_CACHE/nvml-dev-$NVML_DEV_VERSION/include"
# nvml_header_dir VERSION: where hack/deps.sh puts that package version's nvml.h.
nvml_header_dir() { echo "$GDP_CACHE/nvml-dev-$1/include"; }

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages among the arguments that are not installed yet
# (one apt-get run); quick when all are there.
install_debian_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# go_mod_require DIR MODULE: the version DIR/go.mod requires of MODULE.
go_mod_require() {
  awk -v m="$2" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$1/go.mod"
}

# The local cluster's Kubernetes: GDP_KUBERNETES picks a minor (e.g. 1.33), default the
# newest, pinned by test/e2e/go.mod; each older minor is pinned by test/e2e/kubernetes/<minor>/go.mod.
k8s_default_minor() {
  local v
  v=$(go_mod_require "$(repo_root)/test/e2e" k8s.io/kubernetes)
  v=${v#v}
  echo "${v%.*}"
}
k8s_minors() {
  { (cd "$(repo_root)/test/e2e/kubernetes" && ls -d 1.*) 2>/dev/null; k8s_default_minor; } | sort -t. -k2,2n | tr '\n' ' ' | sed 's/ $//'
}
k8s_module_dir() {
  local root m=${GDP_KUBERNETES:-}
  root=$(repo_root)
  if [ -z "$m" ] || [ "$m" = "$(k8s_default_minor)" ]; then
    echo "$root/test/e2e"
  elif [ -f "$root/test/e2e/kubernetes/$m/go.mod" ]; then
    echo "$root/test/e2e/kubernetes/$m"
  else
    die "GDP_KUBERNETES=$m: no such Kubernetes minor here; accepted are $(k8s_minors)"
  fi
}
# The pinned Kubernetes version of that minor, and the bin dir hack/k8s-components.sh
# builds its components into (with etcd, containerd 2, crictl, helm and cdi-validate).
k8s_version() {
  local d
  d=$(k8s_module_dir) || exit 1
  go_mod_require "$d" k8s.io/kubernetes
}
k8s_bin_dir() { echo "$GDP_CACHE/k8s/$(k8s_version)/bin"; }

# The local cluster's container runtime: GDP_RUNTIME is containerd (2.x, the default),
# containerd-1.7 or crio (CRI-O, with Debian's conmon and runc). runtime_bin_dir is where
# hack/k8s-components.sh builds it: the Kubernetes bin dir for containerd 2, else a dir of its own.
RUNTIMES="containerd containerd-1.7 crio"
runtime_name() {
  local r=${GDP_RUNTIME:-containerd}
  case " $RUNTIMES " in *" $r "*) echo "$r" ;; *) die "GDP_RUNTIME=$r: accepted are ${RUNTIMES// /, }" ;; esac
}
runtime_module_dir() {
  local r
  r=$(runtime_name) || exit 1
  echo "$(repo_root)/test/e2e/tools/$r"
}
runtime_version() {
  local r
  r=$(runtime_name) || exit 1
  case "$r" in
  containerd) go_mod_require "$(runtime_module_dir)" github.com/containerd/containerd/v2 ;;
  containerd-1.7) go_mod_require "$(runtime_module_dir)" github.com/containerd/containerd ;;
  crio) go_mod_require "$(runtime_module_dir)" github.com/cri-o/cri-o ;;
  esac
}
runtime_bin_dir() {
  local r
  r=$(runtime_name) || exit 1
  if [ "$r" = containerd ]; then k8s_bin_dir; else echo "$GDP_CACHE/runtimes/$r-$(runtime_version)/bin"; fi
}

# go_module_build MODULE VERSION GO_VERSION DIR LDFLAGS COMMAND...
# Builds each MODULE/cmd/COMMAND at VERSION into DIR/bin through the Go module proxy. A
# throwaway module in DIR/mod requires only MODULE, so minimal version selection picks
# exactly MODULE's own go.mod versions. cgo is on (NVIDIA's Go commands dlopen their
# libraries through it), hence gcc and the libc headers; LDFLAGS are upstream's. Each
# binary has a stamp (module, version, flags, Go version) beside it: with every stamp
# current this only checks, in well under a second. GO_BUILD_TIMES=1 prints
# "COMMAND SECONDSs" on stderr for each build. GO_VERSION is the go directive MODULE needs.
go_module_build() {
  local module=$1 version=$2 go_min=$3 dir=$4 ldflags=$5
  shift 5
  local mod="$dir/mod" bin="$dir/bin" c stamp start took go_version all_current=1
  command -v go >/dev/null || die "go not found: install Go $go_min or newer ($module's go.mod needs go $go_min)"
  # Never download a toolchain behind the user's back: a too-old Go fails with a clear error.
  export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=1
  # go-nvml's cgo calls to NVML entry points nvml.h marks deprecated print hundreds of warnings.
  export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"
  go_version=$(go env GOVERSION)
  for c in "$@"; do
    stamp="$module/cmd/$c@$version ldflags=$ldflags $go_version"
    [ -x "$bin/$c" ] && [ -f "$bin/.$c.stamp" ] && [ "$(cat "$bin/.$c.stamp")" = "$stamp" ] || all_current=0
  done
  ((all_current)) && return 0
  install_debian_packages gcc libc6-dev
  # The throwaway module: rebuilt from scratch when the version or Go changes.
  local mod_stamp="$module@$version $go_version"
  if ! [ -f "$mod/go.sum" ] || ! [ -f "$mod/.stamp" ] || [ "$(cat "$mod/.stamp")" != "$mod_stamp" ]; then
    log "resolving $module@$version through $(go env GOPROXY)"
    rm -rf "$mod"
    mkdir -p "$mod"
    printf 'module gdp.local/%s-build\n\ngo %s\n\nrequire %s %s\n' \
      "$(basename "$(dirname "$dir")")" "$go_min" "$module" "$version" >"$mod/go.mod"
    local pkgs=()
    for c in "$@"; do pkgs+=("$module/cmd/$c@$version"); done
    (cd "$mod" && go get "${pkgs[@]}") ||
      die "go get $module@$version failed: is the Go module proxy ($(go env GOPROXY)) reachable?"
    printf '%s' "$mod_stamp" >"$mod/.stamp"
  fi
  mkdir -p "$bin"
  for c in "$@"; do
    stamp="$module/cmd/$c@$version ldflags=$ldflags $go_version"
    [ -x "$bin/$c" ] && [ -f "$bin/.$c.stamp" ] && [ "$(cat "$bin/.$c.stamp")" = "$stamp" ] && continue
    log "building $c $version (cold on 2 cores: about 30-45 s for the first, seconds for the others)"
    start=$SECONDS
    (cd "$mod" && nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$bin/.$c.tmp" "$module/cmd/$c") ||
      die "go build of $module/cmd/$c failed (module $mod); see the compiler output above"
    mv -f "$bin/.$c.tmp" "$bin/$c"
    printf '%s' "$stamp" >"$bin/.$c.stamp"
    took=$((SECONDS - start))
    log "built $c in ${took}s"
    [ "${GO_BUILD_TIMES:-0}" != 1 ] || printf '%s %ss\n' "$c" "$took" >&2
  done
}

# debian_closure ARCH EXCLUDE_REGEX PACKAGE...: the packages and their dependency closure
# (Depends and Pre-Depends) for ARCH, less the names EXCLUDE_REGEX matches (a regex that
# matches nothing, e.g. '^$', keeps all), each at the version apt has now, as sorted
# "name=version" lines. Architecture-independent packages are named without the architecture.
debian_closure() {
  local arch=$1 exclude=$2 p closure
  shift 2
  local names=()
  for p in "$@"; do
    if apt-cache show "$p" 2>/dev/null | grep -qx 'Architecture: all'; then names+=("$p"); else names+=("$p:$arch"); fi
  done
  closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${names[@]}" 2>/dev/null |
    sed -n 's/^\([a-z0-9][a-z0-9.+-]*\)\(:'"$arch"'\)\?$/\1/p' | sort -u | grep -vE "$exclude" || true)
  [ -n "$closure" ] || die "apt knows no $arch packages among $*: run apt-get update (the $arch lists may be missing)"
  # One apt-cache policy for all: "name:ARCH:" then its Candidate (architecture-independent
  # packages answer for the plain name).
  # shellcheck disable=SC2046
  apt-cache policy $(for p in $closure; do echo "$p:$arch" "$p"; done) 2>/dev/null | awk '
    /^[^ ].*:$/ { name = substr($1, 1, length($1) - 1); sub(/:'"$arch"'$/, "", name); sub(/:amd64$/, "", name); next }
    /^  Candidate: / && $2 != "(none)" && !(name in seen) { seen[name] = 1; print name "=" $2 }' | sort
}

# debian_unpack ARCH ROOT: downloads the "name=version" packages on stdin (debian_closure's
# lines) for ARCH and unpacks them (dpkg -x: never installed) into ROOT, made afresh, as an
# installed system lays them out: usrmerge (/lib is /usr/lib) and absolute links made
# relative to ROOT. ROOT/.files says which package brought each file, "PACKAGE VERSION PATH"
# (hack/sbom.py reads it).
debian_unpack() {
  local arch=$1 root=$2 debs pv p v d t l
  debs=$(mktemp -d)
  rm -rf "$root"
  mkdir -p "$root"
  # apt-get download picks the ARCH build for arch-specific packages and the :all one otherwise.
  while IFS= read -r pv; do
    [ -n "$pv" ] || continue
    p=${pv%%=*} v=${pv#*=}
    (cd "$debs" && { apt-get download -qq -o APT::Sandbox::User=root "$p:$arch=$v" 2>/dev/null ||
      apt-get download -qq -o APT::Sandbox::User=root "$p=$v"; }) || { rm -rf "$debs"; die "apt-get download $p=$v failed"; }
  done
  for d in "$debs"/*.deb; do
    dpkg -x "$d" "$root"
    pv=$(dpkg-deb -W --showformat='${Package} ${Version}' "$d")
    dpkg-deb -c "$d" | awk -v pv="$pv" '{ p = $6; sub(/^\./, "", p); if (p != "/" && $1 !~ /^d/) print pv, p }'
  done >"$root/.files"
  rm -rf "$debs"
  for d in lib lib64 bin sbin; do
    if [ -d "$root/$d" ] && [ ! -L "$root/$d" ]; then
      mkdir -p "$root/usr/$d"
      cp -a "$root/$d/." "$root/usr/$d/"
      rm -rf "${root:?}/$d"
    fi
    [ -e "$root/$d" ] || ln -s "usr/$d" "$root/$d"
  done
  # Absolute links (libfoo.so -> /lib/<triple>/libfoo.so.1) point at the host.
  while IFS= read -r -d '' l; do
    t=$(readlink "$l")
    case "$t" in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$root$t")" "$l" ;;
    esac
  done < <(find "$root" -type l -print0)
}

# debian_root ARCH ROOT LAYOUT EXCLUDE_REGEX PACKAGE...: makes ROOT hold the PACKAGEs and
# their closure for ARCH (debian_closure, debian_unpack), again only when the packages, LAYOUT
# (the caller's name for how it lays them out) or the versions apt has change: with apt's
# lists unchanged since the last time it only checks a stamp.
debian_root() {
  local arch=$1 root=$2 layout=$3 exclude=$4 lists want key
  shift 4
  lists=$(printf '%s\n' "$@" "$layout"; stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null)
  lists=$(sha256sum <<<"$lists" | cut -c1-16)
  [ -f "$root/.stamp" ] && [ "$(sed -n 1p "$root/.stamp")" = "$lists" ] && return 0
  want=$(debian_closure "$arch" "$exclude" "$@")
  [ -n "$want" ] || die "apt has no candidate for the $arch packages $*: run apt-get update"
  key=$(printf '%s\n%s' "$layout" "$want" | sha256sum | cut -c1-16)
  if ! [ -f "$root/.stamp" ] || [ "$(sed -n 2p "$root/.stamp")" != "$key" ]; then
    log "unpacking $(grep -c . <<<"$want") $arch packages into $root: $(tr '\n' ' ' <<<"$want")"
    debian_unpack "$arch" "$root" <<<"$want"
  fi
  printf '%s\n%s\n' "$lists" "$key" >"$root/.stamp"
}
