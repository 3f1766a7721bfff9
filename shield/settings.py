"""Process settings, read from `SHIELD_*` environment variables (see the README's configuration table)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from typing import Annotated

from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from llm_shield.config import CacheSettings

DEFAULT_HOME = Path.home() / ".cache" / "llm-shield"
DEFAULT_METRICS_PORT = 9808


class ShieldSettings(BaseSettings):
    """Every knob of producer and workers. Each field is `SHIELD_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SHIELD_", extra="ignore")

    # Models
    home: Path = Field(default=DEFAULT_HOME, description="Cache folder: downloaded models, built models, catalog")
    catalog: str | None = Field(default=None, description="Catalog path or URL; default <home>/catalog.json")
    thresholds_file: Path | None = Field(default=None, description="Thresholds written by `llm-shield models "
                                         "calibrate`; default <home>/thresholds.json")
    offline: bool = Field(default=False, description="Never touch the network; use verified local copies only")
    file_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list, description="Folders file:// sources may read from")

    # Redis
    redis_url: SecretStr | None = Field(default=None, description="Broker and cache URL (redis://, rediss://, unix://)")
    redis_password_file: Path | None = Field(default=None, description="File holding the Redis password, used "
                                             "for URLs that carry none (keeps it out of the environment and `ps`)")
    cache_url: SecretStr | None = Field(default=None, description="Cache URL when it differs from the broker "
                                        "(also redis+cluster:// or rediss+cluster:// for Redis Cluster)")
    cache_preset: str = "production"
    cache_max_entries: int | None = None
    cache_ttl_seconds: int | None = None
    cache_partitions: int = Field(default=1, ge=1, le=4096, description="Partitions of the cache, each under its "
                                  "own hash tag (one Cluster slot each); every process must use the same count")

    # Workers
    worker_concurrency: int | None = Field(default=None, ge=1, description="Pool processes per worker node; "
                                           "default one per CPU (4 for the GPU queue, at most one per CPU)")
    intra_op_threads: int | None = Field(default=None, ge=1, description="ORT threads per process")
    max_batch_tokens: int | None = Field(default=None, ge=64, description="Padded tokens per inference run; "
                                         "default 1024 on CPU, 16384 on CUDA")
    max_windows: int = Field(default=32, ge=1, description="Token windows scored per text before truncating")
    window_stride: int = Field(default=32, ge=0, description="Tokens shared by consecutive windows")
    task_soft_time_limit: int = 240
    task_time_limit: int = 300
    split_time_limit: int = Field(default=3000, ge=10, description="Seconds a distributed-mode split may take "
                                  "before it fails (it is tried again up to SHIELD_MAX_DELIVERIES times)")
    visibility_timeout: int = 3600
    max_deliveries: int = Field(default=3, ge=1, description="Deliveries of one batch before its rows fail")
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535, description="Prometheus port; 0 turns it off")
    metrics_address: str = Field(default="127.0.0.1", description="Address the metrics port binds; the Helm chart "
                                 "sets 0.0.0.0 for Prometheus to scrape the pod")
    allow_missing_models: bool = Field(default=False, description="Let a worker whose models cannot load start "
                                       "anyway and answer with heuristics (the job summary counts those rows)")
    heartbeat_file: Path | None = None

    # Producer
    batch_size: int = Field(default=128, ge=1, le=4096, description="Rows per task")
    max_text_chars: int = Field(default=1_000_000, ge=1, description="Longer texts become error rows")
    max_inflight_batches: int = Field(default=16, ge=1)
    result_ttl_seconds: int = 24 * 3600
    no_worker_timeout: float = Field(default=60.0, gt=0, description="Seconds a job waits for a live worker on "
                                     "its queue before it stops (exit 3)")
    stall_timeout: float = Field(default=900.0, gt=0, description="Seconds a job may go without any batch "
                                 "answered before it stops (exit 3)")

    @field_validator("file_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [p for p in value.split(os.pathsep) if p]
        return value

    @field_validator("cache_url")
    @classmethod
    def _check_cache_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from llm_shield.checks import CACHE_SCHEMES, check_broker_url
            from llm_shield.errors import ConfigError

            try:
                check_broker_url(value.get_secret_value(), "URL", CACHE_SCHEMES)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def catalog_location(self) -> str:
        return self.catalog or str(self.home / "catalog.json")

    @property
    def thresholds_location(self) -> Path:
        return self.thresholds_file or self.home / "thresholds.json"

    def cache_settings(self) -> CacheSettings:
        base = CacheSettings.preset(self.cache_preset)
        updates: dict[str, object] = {}
        if self.cache_max_entries is not None:
            updates["max_entries"] = self.cache_max_entries
        if self.cache_ttl_seconds is not None:
            updates["ttl_seconds"] = self.cache_ttl_seconds
        if self.cache_partitions != 1:
            updates["partitions"] = self.cache_partitions
        return base.model_copy(update=updates) if updates else base

    def redis_url_value(self) -> str | None:
        return self.with_password(self.redis_url.get_secret_value()) if self.redis_url else None

    def cache_url_value(self) -> str | None:
        if self.cache_url:
            return self.with_password(self.cache_url.get_secret_value())
        return self.redis_url_value()

    def with_password(self, url: str) -> str:
        """`url` with the password of SHIELD_REDIS_PASSWORD_FILE when it has none of its own."""
        if not self.redis_password_file or not url:
            return url
        from urllib.parse import quote, urlsplit, urlunsplit

        from llm_shield.errors import ConfigError

        parts = urlsplit(url)
        if parts.password is not None:
            return url
        try:
            password = self.redis_password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"SHIELD_REDIS_PASSWORD_FILE {self.redis_password_file}: {exc.strerror}") from None
        user = quote(parts.username or "", safe="")
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


@lru_cache(maxsize=1)
def get_settings() -> ShieldSettings:
    """The process's settings, read once. Raises ConfigError naming the `SHIELD_*` variable at fault."""
    from pydantic import ValidationError

    from llm_shield.errors import ConfigError

    try:
        return ShieldSettings()
    except ValidationError as exc:
        raise ConfigError(settings_error_message(exc)) from None


def settings_error_message(exc: "ValidationError") -> str:  # type: ignore[name-defined]  # noqa: F821
    """One line naming each bad `SHIELD_*` variable, its value (never a secret's) and what is wrong."""
    problems = []
    for error in exc.errors():
        name = "SHIELD_" + "_".join(str(p) for p in error["loc"]).upper()
        value = "" if "URL" in name or "PASSWORD" in name or "AUTH" in name else f"={error.get('input')!r}"
        problems.append(f"{name}{value}: {error['msg']}")
    return "invalid setting " + "; ".join(problems)


def redact_url(url: str | None) -> str:
    """A Redis/S3 URL with its password replaced, safe to log."""
    if not url:
        return "<none>"
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
