#!/usr/bin/env bash
# Prepares cross-building for linux/arm64 (Grace Hopper and Grace Blackwell nodes) from Debian:
# the cross toolchain (crossbuild-essential-arm64: aarch64-linux-gnu-g++ with its own glibc and
# libstdc++ under /usr/aarch64-linux-gnu), qemu-user to run arm64 tests, and a sysroot with the
# arm64 builds of the libraries the daemon links, taken from Debian's arm64 archive: the
# packages are downloaded and unpacked (dpkg -x), never installed, so the host's amd64 -dev
# packages stay as they are (some, like libyaml-cpp-dev, cannot be installed for two
# architectures at once). Cached in $GDP_CACHE/sysroot/arm64, keyed by the package list and
# the versions Debian has: with both unchanged this only checks.
#
# Usage: hack/sysroot.sh   (as root the first time: it adds the arm64 architecture to apt)
# Prints the sysroot's path last. cmake/aarch64-linux-gnu.cmake takes it as GDP_SYSROOT.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

arch=arm64
triple=aarch64-linux-gnu
# What the build links or includes (hack/deps.sh has the amd64 ones); their dependencies come too.
packages=(
  libgrpc++-dev libgrpc-dev libprotobuf-dev libabsl-dev libyaml-cpp-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev libcli11-dev libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
  libc-ares-dev libre2-dev libgtest-dev libgmock-dev libbenchmark-dev
  # gRPC's CMake package checks that its grpc_cpp_plugin exists; the build runs the host's.
  protobuf-compiler-grpc
)
# The cross toolchain brings its own C library and C++ runtime: the archive's copies of those
# would shadow them with linker scripts that name host paths.
toolchain_owned='^(libc6|libc6-dev|libgcc-s1|libgcc-12-dev|libstdc\+\+6|libstdc\+\+-12-dev|linux-libc-dev|libcrypt1|libcrypt-dev|libnsl2|libnsl-dev|libtirpc3|libtirpc-dev|gcc-12-base|libasan8|libatomic1|libgomp1|libhwasan0|libitm1|liblsan0|libtsan2|libubsan1)$'

if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  [ "$(id -u)" -eq 0 ] || die "need root to add the $arch architecture to apt (dpkg --add-architecture $arch)"
  log "adding the $arch architecture to apt (its package lists only; nothing of it is installed)"
  dpkg --add-architecture "$arch"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi
install_debian_packages crossbuild-essential-arm64 qemu-user

root="$GDP_CACHE/sysroot/$arch"
debian_root "$arch" "$root" "layout 4" "$toolchain_owned" "${packages[@]}"
[ -d "$root/usr/lib/$triple" ] || die "$root has no usr/lib/$triple: the $arch packages did not unpack"
echo "$root"
