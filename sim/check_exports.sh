#!/bin/sh
# Checks that the simulator library exports only real NVML entry points:
# every defined dynamic symbol starts with "nvml" and is declared in nvml.h.
# Usage: check_exports.sh <libnvidia-ml.so.1> <nvml.h>
set -eu
lib=$1
header=$2
syms=$(nm -D --defined-only "$lib" | awk '{print $NF}')
[ -n "$syms" ] || { echo "FAIL: $lib exports nothing"; exit 1; }
bad=0
for s in $syms; do
  case $s in
    nvml*) ;;
    *) echo "FAIL: $lib exports non-NVML symbol $s"; bad=1; continue ;;
  esac
  if ! grep -Eq "[^A-Za-z0-9_]$s[[:space:]]*\(" "$header"; then
    echo "FAIL: $lib exports $s, which $header does not declare"
    bad=1
  fi
done
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
if [ "$soname" != "libnvidia-ml.so.1" ]; then
  echo "FAIL: soname is '$soname', want libnvidia-ml.so.1"
  bad=1
fi
[ $bad -eq 0 ] && echo "OK: $(echo "$syms" | wc -l) symbols, all declared in nvml.h"
exit $bad
