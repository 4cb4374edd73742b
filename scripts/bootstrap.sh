#!/usr/bin/env bash
# Installs everything swarmlet needs into ./.venv (Debian 12, Python 3.11). Idempotent.
# As root it also installs missing Debian packages; elsewhere it says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_missing+=(python3-venv)
command -v ip >/dev/null || apt_missing+=(iproute2)
command -v ps >/dev/null || apt_missing+=(procps)
if [ "$(id -u)" = 0 ]; then  # the runc runtime and its tests (busybox rootfs)
  command -v runc >/dev/null || apt_missing+=(runc)
  [ -x /bin/busybox ] || apt_missing+=(busybox-static)
  # a real registry on 127.0.0.1 for the image-pull system tests (started by the tests)
  command -v docker-registry >/dev/null || apt_missing+=(docker-registry)
  # overlay networking (VIPs, routing mesh) and its bench
  command -v nft >/dev/null || apt_missing+=(nftables)
  command -v iperf3 >/dev/null || apt_missing+=(iperf3)
fi
if [ ${#apt_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian packages: ${apt_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${apt_missing[*]} (install them as root)" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.swarmlet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "==> installing swarmlet and its Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
