#!/usr/bin/env bash
# Starts or stops a private Docker engine (own socket, data root, exec root, pidfile, bridge;
# never the system's) and builds the local images into it, for the demo and manual testing.
#   eval "$(scripts/dockerd.sh start /tmp/stpd-demo)"   # exports DOCKER_HOST
#   scripts/dockerd.sh stop /tmp/stpd-demo
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"; [ -x "$py" ] || py=python3
out=$("$py" "$here/tests/support/dockerd.py" "$@")
if [ -n "$out" ]; then echo "export $out"; fi
