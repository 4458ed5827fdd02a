# Shared helpers for the scripts in hack/. Source it; it defines functions only.
# shellcheck shell=bash

# Where heavy, version-keyed downloads and builds live, outside the repo.
GDP_CACHE="${GDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-device-plugin}"

# The pinned NVML header: NVIDIA's PyPI package nvidia-nvml-dev.
NVML_DEV_VERSION="13.0.87"
NVML_DEV_SHA256="082871368275cf6620fc900f55d8eaf2563b263a38a00a5168e9650bce963ba1"
NVML_INCLUDE_DIR="$GDP_CACHE/nvml-dev-$NVML_DEV_VERSION/include"

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

# The pinned Kubernetes version (test/e2e/go.mod) and the bin dir hack/k8s-components.sh
# builds its components into.
k8s_version() {
  awk '($1 == "require" && $2 == "k8s.io/kubernetes") { print $3; exit } ($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2; exit }' \
    "$(repo_root)/test/e2e/go.mod"
}
k8s_bin_dir() { echo "$GDP_CACHE/k8s/$(k8s_version)/bin"; }
