#!/usr/bin/env bash
# Quick start: install, build the default models, and scan the shipped samples on an embedded
# Redis + local workers (nothing needs to run beforehand; nothing is left running afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# builds what is missing, or what an upgrade or a retrain changed; quick when the models are current
echo "quickstart: checking the default models (building them takes about a minute)"
llm-shield models build --if-outdated
llm-shield scan samples/chat_logs.jsonl samples/app.log --text-field message.content \
  --scanner prompt_injection --scanner toxicity --scanner secrets \
  -o out/samples.jsonl --overwrite --no-progress
echo "quickstart: results in out/samples.jsonl; flagged rows:"
python3 - <<'PY'
import json
for line in open("out/samples.jsonl"):
    row = json.loads(line)
    if not row["valid"]:
        flagged = ", ".join(n for n, s in row["scanners"].items() if not s["valid"])
        print(f'  {row["id"]}: {flagged} (risk {row["risk_score"]:.2f})')
PY
