"""Coalesced background jobs: at most one running and one pending run per key.

A request while the job for its key runs marks one more run; requests beyond
that are coalesced into the pending one and reported as such, so a flood of
requests costs two runs, not one each. `spacing` also keeps consecutive runs
of one key that many seconds apart, so a slow, steady flood costs one run per
`spacing` seconds. The runs belong to the task group of `run()`; requests made
before it starts wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.abc import TaskGroup

from ..errors import AgentSeatError

log = structlog.get_logger(__name__)

Job = Callable[[str, str], Awaitable[None]]  # (key, reason)


class Coalescer:
    """Runs `job(key, reason)` with at most one run in progress and one pending per key."""

    def __init__(self, name: str, job: Job, *, spacing: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.spacing = spacing
        self._job = job
        self._clock = clock
        self._running: set[str] = set()
        self._pending: dict[str, str] = {}  # key -> reason of the pending run (the first one asked)
        self._started: dict[str, float] = {}  # key -> when its last run started (keys are kinds: few)
        self._tg: TaskGroup | None = None
        self.runs = 0

    def request(self, key: str, reason: str) -> bool:
        """Ask for a run; False if it was coalesced into a run already pending."""
        if key in self._pending:
            return False
        self._pending[key] = reason
        if key not in self._running and self._tg is not None:
            self._start(key)
        return True

    def pending(self, key: str) -> bool:
        return key in self._pending

    def idle(self) -> bool:
        return not self._running and not self._pending

    def _start(self, key: str) -> None:
        assert self._tg is not None
        self._running.add(key)  # a driver exists for the key: running a job, or waiting out the spacing
        self._tg.start_soon(self._drive, key)

    async def _drive(self, key: str) -> None:
        try:
            while key in self._pending:
                # The spacing holds between any two runs of a key, also when the first had ended before
                # the next was asked for (a flood of separate POSTs): a run waiting here stays pending,
                # so everything asked meanwhile folds into it.
                wait = self._started.get(key, float("-inf")) + self.spacing - self._clock()
                if wait > 0:
                    await anyio.sleep(wait)
                reason = self._pending.pop(key)
                self._started[key] = self._clock()
                self.runs += 1
                try:
                    await self._job(key, reason)
                except AgentSeatError as exc:
                    log.warning("lifecycle_job_failed", job=self.name, key=key, error=exc.message)
        finally:
            self._running.discard(key)

    async def run(self) -> None:
        """Own the runs until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for key in list(self._pending):
                    self._start(key)
                await anyio.sleep_forever()
            finally:
                self._tg = None
