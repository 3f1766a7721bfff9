"""Quality on the out-of-distribution test splits, for every scanner and variant: the README's quality table.

    python bench/quality.py [--home DIR] [--variant int8 ...] [--json out.json] [--limit N]

Runs what `llm-shield eval` runs (the embedded cluster, default hybrid mode, the catalog's thresholds) over
``data/<scanner>/ood_test.jsonl.gz`` (sources held out from training; see data/SOURCES.md) and the hand-written
``data/<scanner>/test.jsonl``, and prints one row per scanner x variant x file: precision, recall, F1, false-positive
rate on benign texts, the worst length bucket's false-positive rate, and the worst kind's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SCANNERS = ("prompt_injection", "toxicity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="SHIELD_HOME holding the built models (default: the setting)")
    parser.add_argument("--variant", action="append", choices=["int8", "fp32", "fp16"])
    parser.add_argument("--scanner", action="append", choices=SCANNERS)
    parser.add_argument("--limit", type=int, default=0, help="rows per file at most (0: all)")
    parser.add_argument("--json", type=Path, help="write every report here")
    args = parser.parse_args()
    if args.home:
        os.environ["SHIELD_HOME"] = str(args.home)
        os.environ["SHIELD_CATALOG"] = str(args.home / "catalog.json")
    os.environ.setdefault("SHIELD_METRICS_PORT", "0")
    os.environ["SHIELD_THRESHOLDS_FILE"] = os.devnull + ".absent"  # the catalog's defaults, not a user's

    from llm_shield.producer.quality import evaluate, read_labelled, scan_texts
    from llm_shield.config import HybridMode, Variant
    from llm_shield.settings import get_settings

    settings = get_settings()
    reports = []
    header = ("| scanner | variant | test file | rows | attacks | precision | recall | F1 | FPR | worst length FPR "
              "| worst kind FPR |")
    lines = [header, "|" + "---|" * 11]
    for variant in args.variant or ["int8", "fp32", "fp16"]:
        for scanner in args.scanner or SCANNERS:
            for name in ("ood_test.jsonl.gz", "test.jsonl"):
                path = REPO / "data" / scanner / name
                if not path.exists():
                    continue
                rows = read_labelled([path])
                if args.limit:
                    rows = rows[: args.limit]
                started = time.monotonic()
                results = scan_texts([r.text for r in rows], (scanner,), Variant(variant), HybridMode.hybrid,
                                     settings, None)
                report = evaluate(rows, results, scanner)
                m = report.overall.metrics()
                lengths = {k: c.metrics()["fpr"] for k, c in report.by_length.items() if c.negatives >= 30}
                kinds = {k: c.metrics()["fpr"] for k, c in report.by_kind.items() if c.negatives >= 30}
                worst_len = max(lengths.items(), key=lambda kv: kv[1] or 0, default=("-", None))
                worst_kind = max(kinds.items(), key=lambda kv: kv[1] or 0, default=("-", None))

                def pct(v: float | None) -> str:
                    return "-" if v is None else f"{100 * v:.1f}%"

                def num(v: float | None) -> str:
                    return "-" if v is None else f"{v:.3f}"

                lines.append(f"| `{scanner}` | {variant} | {name} | {m['rows']} | {m['positives']} | "
                             f"{num(m['precision'])} | {num(m['recall'])} | {num(m['f1'])} | {pct(m['fpr'])} | "
                             f"{pct(worst_len[1])} ({worst_len[0]}) | {pct(worst_kind[1])} ({worst_kind[0]}) |")
                print(lines[-1], f"  [{time.monotonic() - started:.0f} s]", flush=True)
                reports.append({"variant": variant, "file": name, **report.as_dict()})
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2) + "\n")


if __name__ == "__main__":
    main()
