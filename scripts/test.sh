#!/usr/bin/env bash
# The whole test suite, with its own set-up. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-chromium
python3 -m pytest "$@"
