#!/usr/bin/env bash
# Fails when the README, the docs, the chart or any script or source file refers to an
# item of the project's tracker by its number: a reader does not know those numbers, and
# text that says which change brought something rots. Describe what is.
# Run by `make test` (ctest: docs_name_no_issue_numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
found=$(git ls-files -- README.md docs deployments hack test tests src tools sim bench fuzz Makefile \
  ':!hack/check-docs.sh' | xargs grep -nIiE '\bissues? ?#?[0-9]+\b' 2>/dev/null || true)
if [ -n "$found" ]; then
  echo "$found"
  echo "check-docs: the lines above name issue numbers; say what the software does instead" >&2
  exit 1
fi
echo "check-docs: no issue numbers in $(git ls-files -- README.md docs deployments hack test tests src tools sim bench fuzz Makefile | wc -l) files"
