#!/usr/bin/env bash
# The real-node suite (a local Kubernetes with a simulated GPU node) arrives
# with issue #4. Until then there is nothing to run, and this says so.
echo "e2e: the real-node suite is not built yet (issue #4); nothing to run." >&2
exit 0
