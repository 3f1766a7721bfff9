"""Smoke test of `bench/run_all.py --quick`: it runs every benchmark end to end and prints the table.

No timing is asserted: the figures of a quick run on a shared machine mean little.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCHMARKS = (
    "1. limit: raw onnxruntime",
    "2. peer: one text at a time",
    "3. system e2e, default pool",
    "4. cached rescan",
    "5. producer memory",
    "6. redis memory per cached entry",
    "7. scaling (a), int8",
    "8. GPU",
)


@pytest.mark.timeout(900)
def test_run_all_quick_prints_every_benchmark(model_settings, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    env_keep = {k: v for k, v in __import__("os").environ.items()
                if not k.startswith("SHIELD_")}  # the run picks its own broker, threads and ports
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick", "--home", str(model_settings.home), "--json", str(out)],
        cwd=REPO, env=env_keep, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout[proc.stdout.index("| benchmark |"):]
    assert table.splitlines()[0] == "| benchmark | variant | rows/s (or MB) | ratio | target | met? |"
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    for name in BENCHMARKS:
        assert any(line.startswith(f"| {name} |") for line in rows), f"no row for {name!r}:\n{table}"
    assert proc.stdout.lstrip().startswith("machine:")
    data = json.loads(out.read_text())
    assert {"cores", "cpu", "onnxruntime", "date"} <= set(data["machine"])
    assert {r["benchmark"] for r in data["rows"]} == set(BENCHMARKS)


@pytest.mark.timeout(600)
def test_producer_bench_beside_a_baseline_prints_both(model_settings, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "producer.json"
    env_keep = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SHIELD_")}
    proc = subprocess.run(
        [sys.executable, "bench/bench_producer.py", "--rows", "300", "--baseline", "HEAD", "--home",
         str(model_settings.home), "--json", str(out)],
        cwd=REPO, env=env_keep, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "floor: plain json loop" in proc.stdout and "this checkout / baseline, cached" in proc.stdout
    figures = json.loads(out.read_text())
    for tree in ("baseline (HEAD)", "this checkout"):
        assert figures[tree]["cached_rows_per_cpu_s"] > 0 and figures[tree]["sent_redis_commands_per_row"] > 0
