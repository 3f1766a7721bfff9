"""Raw onnxruntime in fresh processes: the hardware's limit for a given split of the cores.

`parallel_rates(model, cases, processes, threads, repeats)` starts `processes` spawned processes, each with an
onnxruntime session of `threads` intra-op threads on the same model.onnx (the options a worker uses). For
each case (a list of pre-padded feeds) the processes take the feeds round robin, start together at a barrier
and the case's time is the slowest process's; best of `repeats`. Only `session.run` is timed: tokenization
and padding happen before, in the parent.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Sequence
from pathlib import Path

Feeds = dict  # input name -> np.ndarray


def make_session(path: Path, threads: int, providers: Sequence[str] = ("CPUExecutionProvider",),
                 spinning: bool = True):  # noqa: ANN201
    """The options a worker process uses (worker/session.py), on the same model.onnx file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def _child(path: str, threads: int, providers: list[str], spinning: bool, cases: list[list[Feeds]],
           repeats: int, barrier, results) -> None:  # noqa: ANN001
    session = make_session(Path(path), threads, providers, spinning)
    times: list[list[float]] = []  # per case, per round
    for feeds in cases:
        if feeds:
            session.run(["logits"], feeds[0])  # warm-up: first-run allocations off the clock
        rounds = []
        for _ in range(repeats):
            barrier.wait()
            start = time.perf_counter()
            for f in feeds:
                session.run(["logits"], f)
            rounds.append(time.perf_counter() - start)
            barrier.wait()  # nobody starts the next round while another still runs this one
        times.append(rounds)
    results.put(times)


def parallel_seconds(model_path: Path, cases: Sequence[Sequence[Feeds]], processes: int, threads: int,
                     repeats: int, providers: Sequence[str] = ("CPUExecutionProvider",)) -> list[float]:
    """Seconds per case: the slowest of `processes` processes running their round-robin share of the case's
    feeds at the same time (best of `repeats` rounds)."""
    ctx = mp.get_context("spawn")  # fresh interpreters, like pool processes that load after fork
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    spinning = processes == 1  # as the workers do: no spinning when processes share the cores
    children = [ctx.Process(target=_child, args=(str(model_path), threads, list(providers), spinning,
                                                 [list(c[i::processes]) for c in cases], repeats, barrier, results))
                for i in range(processes)]
    for c in children:
        c.start()
    try:
        per_child = [results.get(timeout=1800) for _ in children]
    finally:
        for c in children:
            c.join(timeout=30)
            if c.is_alive():
                c.kill()
    # a round lasts as long as its slowest process; a case takes its best round
    return [min(max(times[k][r] for times in per_child) for r in range(repeats)) for k in range(len(cases))]
