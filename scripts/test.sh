#!/usr/bin/env bash
# The whole test suite, with its own set-up. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-chromium
# the `train` extra's PyTorch, for the fine-tuning test (CPU build; machines here keep its wheel on disk)
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'torch==2.13.0'
python3 -m pytest "$@"
