#!/usr/bin/env bash
# Runs the docs' sandbox commands (tests/docs/commands.txt, kind sandbox:GROUP) as a reader
# would type them, one group at a time, each group in its own private mount, network and PID
# namespaces: /tmp is an empty tmpfs, loopback is the namespace's own (port 9101 is free),
# build/release is BUILD_DIR, and every process a group starts ends with its namespace. A
# command that exits non-zero fails its group; a command ending in & runs in the background,
# and the next one starts a second later, as when a reader types it.
# Prints each command and its output; exits 1 when any group failed.
#
# Usage: tests/docs/run-doc-commands.sh BUILD_DIR [GROUP...]   (as root: it unshares namespaces)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [GROUP...]}" && pwd)
shift
[ "$(id -u)" -eq 0 ] || { echo "run-doc-commands: needs root (unshare); skipped" >&2; exit 77; }
groups=("$@")
((${#groups[@]})) || mapfile -t groups < <("$root/hack/doc-commands.py" groups)
failed=0
for g in "${groups[@]}"; do
  script=$(mktemp)
  {
    echo "set -u"
    echo 'fail() { echo "FAILED: $1"; exit 1; }'
    echo "cd '$root'"
    while IFS= read -r cmd; do
      printf 'echo %q\n' "\$ $cmd"
      if [[ "$cmd" == *"&" ]]; then
        # A reader types the next command a moment later: give what started a second.
        printf '%s\nsleep 1\n' "$cmd"
      else
        printf '{ %s\n} || fail %q\n' "$cmd" "$cmd"
      fi
    done < <("$root/hack/doc-commands.py" sandbox "$g")
  } >"$script"
  echo "=== group $g"
  # A fresh /tmp, loopback up, and the build under test at build/release (read-only bind).
  # The checkout and the build are held on /mnt first: either may be under /tmp.
  if unshare --mount --net --pid --fork --mount-proc bash -c "
      set -e
      mount --make-rprivate /
      mount -t tmpfs tmpfs /mnt
      mkdir /mnt/repo /mnt/build
      mount --bind '$root' /mnt/repo
      mount --bind '$build' /mnt/build
      mount -t tmpfs tmpfs /tmp
      mkdir -p '$root'
      mount --bind /mnt/repo '$root'
      mkdir -p '$root/build/release'
      mount --bind -o ro /mnt/build '$root/build/release'
      ip link set lo up
      exec bash -s" <"$script" 2>&1 | sed 's/^/  /'; then
    echo "=== group $g: ok"
  else
    echo "=== group $g: FAILED"
    failed=1
  fi
  rm -f "$script"
done
exit "$failed"
