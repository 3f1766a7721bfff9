"""No silent waits: what a job that waits on workers checks every few seconds, for batches and splits alike.

Are there live workers on the queue (else say so, and stop after SHIELD_NO_WORKER_TIMEOUT)? Did the node that
took a unit stop beating (then send the unit again at once, instead of waiting for the broker's visibility
timeout)? Was nothing answered for the stall timeout (then stop)?
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from llm_shield import liveness
from llm_shield.config import Variant
from llm_shield.contract import claims_key
from llm_shield.errors import ScanIncompleteError

log = logging.getLogger("shield.producer")

#: Seconds between checks of the workers' heartbeats and claims, and between "waiting" log lines.
WATCH_SECONDS = 5.0
WAIT_LOG_SECONDS = 10.0


class Watcher:
    """Watches the workers of one job's queue. `call` runs each Redis operation (the job's reconnecting
    wrapper); `resend(index)` sends a unit again."""

    def __init__(self, client: Any, job_id: str, variant: Variant, queue: str, no_worker_timeout: float,
                 stall_timeout: float, unit: str = "batch") -> None:
        self.client, self.job_id, self.variant, self.queue = client, job_id, variant, queue
        self.no_worker_timeout, self.stall_timeout, self.unit = no_worker_timeout, stall_timeout, unit
        self.waiting_for: str | None = None
        self.last_answer = time.monotonic()
        self._last_watch = 0.0
        self._last_wait_log = float("-inf")  # the first "no worker" warning comes at once
        self._no_worker_since: float | None = None
        self._resent_for: dict[int, str] = {}  # unit -> the dead node it was sent again for

    def answered(self) -> None:
        self.last_answer = time.monotonic()
        self.waiting_for = None

    def check(self, outstanding: Collection[int], resend: Callable[[int], None],
              call: Callable[[Callable[[], Any]], Any] = lambda op: op()) -> None:
        """At most every WATCH_SECONDS (every second while no worker is live)."""
        now = time.monotonic()
        if now - self._last_watch < (1.0 if self._no_worker_since else WATCH_SECONDS):
            return
        self._last_watch = now
        live = call(lambda: liveness.live_members(self.client, self.variant))
        indexes = list(outstanding)  # only these: the claims of a long job's finished units are not read again
        # also while no worker is live: the unit waits on the queue for the next worker, not for the visibility timeout
        self._resend_dead_holders(indexes, resend, call)
        if not live:
            self._no_worker_since = self._no_worker_since or now
            waited = now - self._no_worker_since
            self.waiting_for = f"waiting for workers on queue {self.queue} ({waited:.0f} s)"
            if now - self._last_wait_log >= WAIT_LOG_SECONDS:
                self._last_wait_log = now
                log.warning("no live worker consumes queue %s (%.0f s so far); start one with "
                            "`llm-shield worker --variant %s`", self.queue, waited, self.variant.value)
            if waited >= self.no_worker_timeout:
                raise ScanIncompleteError(
                    f"no live worker consumed queue {self.queue} for {waited:.0f} s "
                    f"(SHIELD_NO_WORKER_TIMEOUT); start one with `llm-shield worker --variant "
                    f"{self.variant.value}`")
            return
        self._no_worker_since = None
        quiet = now - self.last_answer
        if indexes:
            units = f"{self.unit}(es)" if self.unit.endswith("ch") else f"{self.unit}(s)"
            self.waiting_for = f"waiting for {len(indexes)} {units} on queue {self.queue} ({quiet:.0f} s)"
        if quiet >= self.stall_timeout:
            raise ScanIncompleteError(
                f"no {self.unit} was answered for {quiet:.0f} s (SHIELD_STALL_TIMEOUT) although {len(live)} worker "
                f"process(es) are alive on queue {self.queue}; check the worker logs")

    def _resend_dead_holders(self, indexes: list[int], resend: Callable[[int], None],
                             call: Callable[[Callable[[], Any]], Any]) -> None:
        """Send again, once per dead node, each outstanding unit whose claiming node no longer beats."""
        claimed = call(lambda: self.client.hmget(claims_key(self.job_id), [str(i) for i in indexes])) if indexes else []
        claims = {i: c.decode() for i, c in zip(indexes, claimed) if c is not None}
        nodes = call(lambda: liveness.live_members(self.client, self.variant, nodes=True)) if claims else set()
        for index in indexes:
            holder = claims.get(index)
            if holder is not None and holder not in nodes and self._resent_for.get(index) != holder:
                log.warning("the worker %s that took %s %d stopped beating; sending the %s again", holder,
                            self.unit, index, self.unit)
                self._resent_for[index] = holder
                resend(index)
