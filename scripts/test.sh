#!/usr/bin/env bash
# Installs everything, then runs the whole test suite: lint, types, unit, integration,
# system. Extra arguments go to pytest (e.g. scripts/test.sh -k store).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/rootview.sh  # runc and `ip -n` need / to be a mount point (not so in a chroot)
bash scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
