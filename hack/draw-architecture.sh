#!/usr/bin/env bash
# Renders docs/img/architecture.dot (the parts of docs/architecture.md and what they talk to)
# into docs/img/architecture.png with Graphviz (Debian's graphviz, installed if missing).
# Usage: hack/draw-architecture.sh [OUT.png]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(repo_root)"
install_debian_packages graphviz
out=${1:-docs/img/architecture.png}
dot -Tpng -Gdpi=80 docs/img/architecture.dot -o "$out"
echo "$out"
