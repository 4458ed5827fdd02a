#!/usr/bin/env bash
# Writes the field table of docs/configuration.md (between its "fields: begin" and
# "fields: end" markers) from the config schema, as `gpu-device-plugin config-fields`
# prints it. The config unit tests fail while the two differ.
#   hack/gen-config-docs.sh [BINARY]   (default: build/release/src/daemon/gpu-device-plugin, built if missing)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
bin=${1:-$root/build/release/src/daemon/gpu-device-plugin}
[ -x "$bin" ] || "$root/hack/build.sh" release gpu-device-plugin >/dev/null
doc=$root/docs/configuration.md
table=$(mktemp)
trap 'rm -f "$table"' EXIT
"$bin" config-fields >"$table"
python3 - "$doc" "$table" <<'PY'
import sys
doc_path, table_path = sys.argv[1], sys.argv[2]
doc = open(doc_path).read()
begin, end = "<!-- fields: begin -->\n", "<!-- fields: end -->"
a, b = doc.find(begin), doc.find(end)
if a < 0 or b < 0:
    sys.exit(f"{doc_path}: no {begin.strip()} / {end} markers around the field table")
open(doc_path, "w").write(doc[:a + len(begin)] + open(table_path).read() + doc[b:])
PY
echo "wrote the field table of $doc"
