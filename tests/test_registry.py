"""Model registry: catalog validation and ensure_available over file://, http:// and s3:// sources."""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from llm_shield.config import Variant
from llm_shield.errors import CatalogError, ChecksumMismatchError, ConfigError, ModelUnavailableError
from llm_shield.registry import Catalog, CatalogEntry, ModelFile, ensure_available, load_catalog, save_catalog
from llm_shield.registry.fetch import entry_dir, verify_local
from llm_shield.settings import ShieldSettings

FILES = {"model.onnx": b"\x08\x07onnx-bytes" * 5000, "tokenizer.json": b'{"tok": 1}', "config.json": b'{"id2label": {"0": "SAFE", "1": "INJECTION"}}'}


def make_entry(source: str, files: dict[str, bytes] = FILES, entry_id: str = "pi-test-int8") -> CatalogEntry:
    records = [ModelFile(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in files.items()]
    model = records[0]
    return CatalogEntry(id=entry_id, task="prompt_injection", variant=Variant.int8, source=source,
                        sha256=model.sha256, size=model.size, files=records, labels=["SAFE", "INJECTION"],
                        risk_labels=["INJECTION"])


def write_files(folder: Path, files: dict[str, bytes] = FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture()
def settings(tmp_path: Path) -> ShieldSettings:
    return ShieldSettings(home=tmp_path / "home", catalog=str(tmp_path / "home" / "catalog.json"))


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802
        with self.lock:
            self.counts[self.path] = self.counts.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_root(tmp_path: Path):
    root = write_files(tmp_path / "served")
    CountingHandler.counts = {}
    handler = lambda *a, **k: CountingHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()


def test_catalog_round_trip_and_find(tmp_path: Path) -> None:
    catalog = Catalog(models=[make_entry("https://example.invalid/m/")])
    save_catalog(catalog, tmp_path / "c.json")
    loaded = load_catalog(tmp_path / "c.json")
    assert loaded.find("prompt_injection", "int8").sha256 == hashlib.sha256(FILES["model.onnx"]).hexdigest()
    with pytest.raises(CatalogError, match="no model for toxicity/int8"):
        loaded.find("toxicity", "int8")


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "..", "/abs"])
def test_entry_ids_that_escape_the_cache_are_refused(bad_id: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        make_entry("https://example.invalid/", entry_id=bad_id)


def test_file_names_that_escape_are_refused(tmp_path: Path) -> None:
    raw = json.loads(Catalog(models=[make_entry("https://x.invalid/")]).model_dump_json())
    raw["models"][0]["files"][1]["name"] = "../../etc/passwd"
    (tmp_path / "c.json").write_text(json.dumps(raw))
    with pytest.raises(CatalogError, match="not allowed"):
        load_catalog(tmp_path / "c.json")


def test_file_source_fetch_and_verify(settings: ShieldSettings) -> None:
    src = write_files(settings.home / "store" / "m")
    catalog = Catalog(models=[make_entry(src.as_uri())])
    folder = ensure_available("prompt_injection", "int8", settings, catalog)
    assert (folder / "model.onnx").read_bytes() == FILES["model.onnx"]
    assert folder == entry_dir(catalog.models[0], settings)
    assert verify_local(catalog.models[0], settings) == []


def test_file_source_outside_roots_is_refused(settings: ShieldSettings, tmp_path: Path) -> None:
    src = write_files(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="SHIELD_FILE_ROOTS"):
        ensure_available("prompt_injection", "int8", settings, Catalog(models=[make_entry(src.as_uri())]))
    allowed = settings.model_copy(update={"file_roots": [tmp_path / "elsewhere"]})
    assert ensure_available("prompt_injection", "int8", allowed, Catalog(models=[make_entry(src.as_uri())])).is_dir()


def test_checksum_mismatch_is_refused_and_leaves_nothing(settings: ShieldSettings, http_root) -> None:
    url, root = http_root
    entry = make_entry(url)
    (root / "model.onnx").write_bytes(b"tampered" + FILES["model.onnx"][8:])
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        ensure_available("prompt_injection", "int8", settings, Catalog(models=[entry]))
    leftovers = [p.name for p in entry_dir(entry, settings).iterdir()]
    assert "model.onnx" not in leftovers and not any(n.endswith(".part") for n in leftovers)


def test_http_download_once_then_served_locally(settings: ShieldSettings, http_root) -> None:
    url, _ = http_root
    catalog = Catalog(models=[make_entry(url)])
    ensure_available("prompt_injection", "int8", settings, catalog)
    ensure_available("prompt_injection", "int8", settings, catalog)
    assert CountingHandler.counts["/model.onnx"] == 1


def test_http_404_is_a_clear_error(settings: ShieldSettings, http_root) -> None:
    url, _ = http_root
    with pytest.raises(ModelUnavailableError, match="HTTP 404"):
        ensure_available("prompt_injection", "int8", settings, Catalog(models=[make_entry(url + "missing/")]))


def test_offline_mode_never_touches_the_network(settings: ShieldSettings, http_root) -> None:
    url, _ = http_root
    catalog = Catalog(models=[make_entry(url)])
    offline = settings.model_copy(update={"offline": True})
    with pytest.raises(ModelUnavailableError, match="offline mode"):
        ensure_available("prompt_injection", "int8", offline, catalog)
    assert CountingHandler.counts == {}
    ensure_available("prompt_injection", "int8", settings, catalog)  # online once
    before = dict(CountingHandler.counts)
    assert ensure_available("prompt_injection", "int8", offline, catalog).is_dir()
    assert CountingHandler.counts == before


def _fetch_in_child(home: str, catalog_json: str, out: "multiprocessing.Queue[str]") -> None:
    settings = ShieldSettings(home=Path(home), catalog=str(Path(home) / "catalog.json"))
    catalog = Catalog.model_validate_json(catalog_json)
    out.put(str(ensure_available("prompt_injection", "int8", settings, catalog)))


def test_concurrent_processes_download_once(settings: ShieldSettings, http_root) -> None:
    url, _ = http_root
    catalog = Catalog(models=[make_entry(url)])
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child, args=(str(settings.home), catalog.model_dump_json(), out))
             for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len({out.get(timeout=5) for _ in procs}) == 1
    assert CountingHandler.counts["/model.onnx"] == 1
    assert CountingHandler.counts["/tokenizer.json"] == 1


def test_s3_source(settings: ShieldSettings, s3_bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    for name, data in FILES.items():
        s3.put_object(Bucket=s3_bucket, Key=f"models/pi/{name}", Body=data)
    catalog = Catalog(models=[make_entry(f"s3://{s3_bucket}/models/pi/")])
    folder = ensure_available("prompt_injection", "int8", settings, catalog)
    assert (folder / "config.json").read_bytes() == FILES["config.json"]


def test_s3_missing_object_is_a_clear_error(settings: ShieldSettings, s3_bucket: str) -> None:
    catalog = Catalog(models=[make_entry(f"s3://{s3_bucket}/nothing/")])
    with pytest.raises(ModelUnavailableError, match="NoSuchKey"):
        ensure_available("prompt_injection", "int8", settings, catalog)


def test_catalog_from_http(settings: ShieldSettings, http_root) -> None:
    url, root = http_root
    save_catalog(Catalog(models=[make_entry(url)]), root / "catalog.json")
    assert load_catalog(url + "catalog.json").models[0].id == "pi-test-int8"
