"""The Celery app both sides use: Redis broker, JSON only, late acks, one task prefetched per process.

The producer builds it to send tasks by name; the workers (`llm_shield.worker.app`) add the task code.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from llm_shield.contract import QUEUES, TASK_SCAN_BATCH
from llm_shield.errors import ConfigError
from llm_shield.settings import ShieldSettings, get_settings

#: Seconds a pool process may spend in worker_process_init (loading models) before Celery kills it.
PROCESS_INIT_TIMEOUT = 300.0


def celery_config(settings: ShieldSettings, broker_url: str) -> dict:
    """Celery settings; each choice is explained in the README's "Workers" section."""
    if settings.visibility_timeout <= settings.task_time_limit:
        raise ConfigError(
            f"SHIELD_VISIBILITY_TIMEOUT ({settings.visibility_timeout}s) must exceed SHIELD_TASK_TIME_LIMIT "
            f"({settings.task_time_limit}s), or Redis redelivers tasks that are still running"
        )
    if settings.visibility_timeout <= settings.split_time_limit + 60:
        raise ConfigError(
            f"SHIELD_VISIBILITY_TIMEOUT ({settings.visibility_timeout}s) must exceed SHIELD_SPLIT_TIME_LIMIT "
            f"({settings.split_time_limit}s) by over a minute, or Redis redelivers splits that are still running"
        )
    transport = {"visibility_timeout": settings.visibility_timeout}
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_publish_retry": True,
        # ride out a broker restart of up to about a minute while publishing
        "task_publish_retry_policy": {"max_retries": 30, "interval_start": 0.5, "interval_step": 0.5,
                                      "interval_max": 2.0},
        "result_backend": None,
        "task_ignore_result": True,  # outcomes go to a per-job Redis list, not per-task result keys
        "task_serializer": "json",
        "accept_content": ["json"],  # pickle and every other format are refused
        "result_serializer": "json",
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "worker_proc_alive_timeout": PROCESS_INIT_TIMEOUT,
        "task_queues": [Queue(name) for name in QUEUES.values()],
        "task_default_queue": QUEUES[next(iter(QUEUES))],
        "task_routes": {TASK_SCAN_BATCH: {"queue": QUEUES[next(iter(QUEUES))]}},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def kombu_url(url: str) -> str:
    """redis-py's unix://[:password@]/path?db=N as kombu spells it: redis+socket://[:password@]/path?virtual_host=N."""
    if not url.startswith("unix://"):
        return url
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    auth = f":{parts.password}@" if parts.password else ""
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{auth}{parts.path}?virtual_host={db}"


def make_celery(settings: ShieldSettings | None = None, broker_url: str | None = None) -> Celery:
    settings = settings or get_settings()
    url = broker_url or settings.redis_url_value() or "redis://127.0.0.1:6379/0"
    app = Celery("llm_shield")
    app.conf.update(celery_config(settings, kombu_url(url)))
    # redis-py's spelling, for our own keys. An attribute of the app, not a setting: Celery masks only its own
    # broker settings, and Flower and `celery inspect conf` show every other setting in clear
    app.shield_redis_url = url  # type: ignore[attr-defined]
    return app
