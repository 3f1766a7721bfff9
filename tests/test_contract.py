"""The producer/worker contract: cache keys, queue routing, payload limits, Celery settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llm_shield.celery_config import celery_config, kombu_url
from llm_shield.config import CacheSettings, MLConfig, Variant
from llm_shield.contract import MAX_BATCH_TEXTS, ModelRef, ScanBatch, ScanOptions, WindowConfig, ml_cache_key, queue_for
from llm_shield.errors import ConfigError
from llm_shield.settings import ShieldSettings, redact_url

MODEL = ModelRef(id="m", variant=Variant.int8, sha256="ab" * 32)
WINDOW = WindowConfig(max_length=256, stride=32, max_windows=32)


def test_cache_key_is_stable_and_covers_every_field() -> None:
    key = ml_cache_key("prompt_injection", MODEL, WINDOW, "hello")
    assert len(key) == 32 and key == ml_cache_key("prompt_injection", MODEL, WINDOW, "hello")
    assert len(
        {key,
         ml_cache_key("toxicity", MODEL, WINDOW, "hello"),
         ml_cache_key("prompt_injection", MODEL.model_copy(update={"sha256": "cd" * 32}), WINDOW, "hello"),
         ml_cache_key("prompt_injection", MODEL.model_copy(update={"variant": Variant.fp32}), WINDOW, "hello"),
         ml_cache_key("prompt_injection", MODEL, WINDOW.model_copy(update={"stride": 16}), "hello"),
         ml_cache_key("prompt_injection", MODEL, WINDOW, "hello "),
         }) == 6


def test_field_tags_prevent_ambiguous_concatenations() -> None:
    a = ml_cache_key("ab", MODEL, WINDOW, "c")
    b = ml_cache_key("a", MODEL, WINDOW, "bc")
    assert a != b


def test_queues_by_variant() -> None:
    assert [queue_for(v) for v in Variant] == ["shield.cpu.fp32", "shield.gpu.fp16", "shield.cpu.int8"]


def test_batches_are_bounded() -> None:
    with pytest.raises(ValidationError):
        ScanBatch(job_id="j", batch_index=0, options=ScanOptions(), texts=["x"] * (MAX_BATCH_TEXTS + 1))


def test_celery_settings_are_json_only_with_late_acks() -> None:
    conf = celery_config(ShieldSettings(), "redis://x")
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]
    with pytest.raises(ConfigError, match="VISIBILITY_TIMEOUT"):
        celery_config(ShieldSettings(visibility_timeout=100, task_time_limit=300), "redis://x")


def test_unix_socket_urls_are_translated_for_kombu() -> None:
    assert kombu_url("unix:///tmp/r.sock?db=3") == "redis+socket:///tmp/r.sock?virtual_host=3"
    assert kombu_url("unix://:pw@/tmp/r.sock?db=0") == "redis+socket://:pw@/tmp/r.sock?virtual_host=0"
    assert kombu_url("rediss://:pw@h:6380/1") == "rediss://:pw@h:6380/1"


def test_presets_and_env_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MLConfig.preset("edge").variant is Variant.int8
    assert CacheSettings.preset("disabled").enabled is False
    with pytest.raises(ValueError, match="unknown cache preset"):
        CacheSettings.preset("huge")
    monkeypatch.setenv("SHIELD_CACHE_PRESET", "minimal")
    monkeypatch.setenv("SHIELD_CACHE_MAX_ENTRIES", "1234")
    monkeypatch.setenv("SHIELD_REDIS_URL", "redis://:hunter2@h:6379/0")
    settings = ShieldSettings()
    assert settings.cache_settings() == CacheSettings(max_entries=1234, ttl_seconds=3600)
    assert "hunter2" not in repr(settings) and redact_url(settings.redis_url_value()) == "redis://:***@h:6379/0"
