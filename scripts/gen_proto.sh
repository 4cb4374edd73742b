#!/usr/bin/env bash
# Regenerates the Python code for proto/*.proto into swarmlet/api/ (committed).
# Usage: scripts/gen_proto.sh [OUT_DIR]   (OUT_DIR defaults to the repo root)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
py=${PYTHON:-.venv/bin/python}
export PATH="$(dirname "$py"):$PATH"
mkdir -p "$out/swarmlet/api"
"$py" -m grpc_tools.protoc -I swarmlet/api=proto \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" \
  proto/swarmlet.proto
