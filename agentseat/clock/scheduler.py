"""The scheduler: what is due becomes an inbox event, once; then sleep until the next due time.

Only the runtime owner runs it (the owner election makes it one per agent); the inbox's key
dedupe makes a reminder raised twice (a crash between storing it and marking the promise)
one event. A promise that fell due while nothing ran is raised at the first start after,
its lateness visible as `received_at - created_at`. Time comes from `now`, injectable, so
tests move it instead of sleeping.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import SocketAttribute, TaskGroup, TaskStatus

from ..errors import AgentSeatError
from ..promises.store import Promises
from ..runtime.events import Event
from ..runtime.inbox import Inbox
from .poke import PORT_KEY

__all__ = ["Clock", "Timer", "scheduled"]

log = structlog.get_logger(__name__)

#: Longest sleep: after a wall-clock jump or a suspend (monotonic time stops), the clock
#: looks again within this long. 12 wake-ups an hour when nothing is due.
RECHECK = 300.0
NEXT_KEY = "next_due"
Now = Callable[[], datetime]


class Timer:
    """Another due time the clock serves (the daily summary): when next, and what to do then."""

    name = "timer"

    def next_at(self, now: datetime) -> datetime | None:  # pragma: no cover - interface
        raise NotImplementedError

    async def fire(self, now: datetime) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """Promise reminders and timers, for the runtime owner."""

    def __init__(self, promises: Promises, inbox: Inbox, *, now: Now = _utcnow, timers: list[Timer] | None = None,
                 recheck: float = RECHECK) -> None:
        self.promises = promises
        self.inbox = inbox
        self.now = now
        self.timers = timers or []
        self.recheck = recheck
        self.wakeups = 0  # times the loop woke (bench: wake-ups per hour)
        self.fired = 0
        self.next_due: datetime | None = None
        self._poked = anyio.Event()

    def add(self, timer: Timer) -> None:
        """Serve `timer` from now on (the reconcile behind webhooks, while they run)."""
        self.timers.append(timer)
        self.wake()

    def remove(self, timer: Timer) -> None:
        if timer in self.timers:
            self.timers.remove(timer)

    def timer_times(self) -> dict[str, str | None]:
        """When each timer is next due (`status`): the daily summary, the reconcile."""
        now = self.now()
        return {timer.name: (at.isoformat() if (at := timer.next_at(now)) else None) for timer in self.timers}

    def wake(self) -> None:
        """Look again now (a promise was added or resolved, or a test moved time)."""
        self._poked.set()

    async def tick(self) -> datetime | None:
        """Raise everything due by now; store and return the next due time."""
        now = self.now()
        while due := await anyio.to_thread.run_sync(self.promises.pending, now):
            events = [Event.reminder(promise_id=p.id, chat_id=p.chat_id, description=p.description, due=p.due,
                                     received_at=now.isoformat()) for p in due]
            stored = await self.inbox.aappend(events)
            for promise in due:
                await anyio.to_thread.run_sync(self.promises.mark_fired, promise.id, now)
            self.fired += len(stored)
            for promise in due:
                log.info("reminder_raised", promise=promise.id, chat=promise.chat_id,
                         late_seconds=round((now - promise.due_at()).total_seconds(), 1))
        upcoming = [await anyio.to_thread.run_sync(self.promises.next_due)]
        for timer in self.timers:
            at = timer.next_at(now)
            if at is not None and at <= now:
                await timer.fire(now)
                at = timer.next_at(now)
            upcoming.append(at)
        self.next_due = min((t for t in upcoming if t is not None), default=None)
        stored_next = None if self.next_due is None else self.next_due.isoformat()
        await anyio.to_thread.run_sync(self.promises.set_meta, NEXT_KEY, stored_next)
        return self.next_due

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled: tick, then sleep until the next due time, a poke, or `recheck`.

        The clock never takes the runtime down: a store that fails is retried at the next
        look, and without a loopback socket other processes' promises wait for `recheck`."""
        async with anyio.create_task_group() as tg:
            port = await self._listener(tg)
            log.info("clock_started", port=port)
            task_status.started()
            try:
                while True:
                    self._poked = anyio.Event()
                    wait = self.recheck
                    try:
                        upcoming = await self.tick()
                    except (AgentSeatError, sqlite3.Error) as exc:
                        log.warning("clock_tick_failed", error=getattr(exc, "message", type(exc).__name__))
                        wait = min(wait, 30.0)
                    else:
                        if upcoming is not None:
                            wait = min(wait, max(0.0, (upcoming - self.now()).total_seconds()))
                    with anyio.move_on_after(wait):
                        await self._poked.wait()
                    self.wakeups += 1
            finally:
                with anyio.CancelScope(shield=True), suppress(sqlite3.Error):
                    if port is not None:
                        await anyio.to_thread.run_sync(self.promises.set_meta, PORT_KEY, None)
                tg.cancel_scope.cancel()

    async def _listener(self, tg: TaskGroup) -> int | None:
        """Listen for pokes on a loopback UDP port, published in the store; None if that fails."""
        try:
            udp = await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.1")
            port = int(udp.extra(SocketAttribute.local_port))
            await anyio.to_thread.run_sync(self.promises.set_meta, PORT_KEY, str(port))
        except (OSError, sqlite3.Error) as exc:
            log.warning("clock_poke_unavailable", error=type(exc).__name__)
            return None
        tg.start_soon(self._listen, udp)
        return port

    async def _listen(self, udp: Any) -> None:
        async with udp:
            async for _packet in udp:
                self.wake()


def scheduled(promises: Promises, *, limit: int = 5, extra: dict[str, str | None] | None = None) -> dict[str, Any]:
    """What `status` shows of the clock: its stored next due time and the next pending promises."""
    pending = [p for p in promises.promised(open_only=True) if p.fired_at is None][:limit]
    return {"next_due": promises.get_meta(NEXT_KEY),
            "promises": [{"id": p.id, "due": p.due, "chat_id": p.chat_id} for p in pending],
            **{k: v for k, v in (extra or {}).items() if v}}


