"""The runtime's periodic duties as timers of the clock: one place owns time.

`Reconcile`: behind webhooks, every `AGENTSEAT_RECONCILE_SECONDS`, ask the poller for one
read of chats and of mail (what a lost notification hid). The poller's resync workers run
it; the clock only says when.

`Renewals`: a subscription manager's upkeep (renewals before expiry, retries after a
refusal) when its next check is due. The manager's own task does the Graph work, so a
slow PATCH never holds up a reminder; `maintained` runs that task with its timer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from .scheduler import Clock, Now, Timer

__all__ = ["Reconcile", "Renewals", "maintained"]


class Resyncer(Protocol):
    def resync_soon(self, kind: str, reason: str) -> bool: ...


class Reconcile(Timer):
    name = "reconcile"

    def __init__(self, poller: Resyncer, every_seconds: float, now: Now) -> None:
        self.poller, self.every = poller, timedelta(seconds=every_seconds)
        self._last = now()

    def next_at(self, now: datetime) -> datetime | None:
        return self._last + self.every

    async def fire(self, now: datetime) -> None:
        self._last = now
        for kind in ("teams", "mail"):
            self.poller.resync_soon(kind, "timer")


class Upkept(Protocol):
    upkeep_pending: bool
    on_schedule_change: Callable[[], None]

    def next_check_at(self) -> datetime: ...
    def request_upkeep(self) -> None: ...
    async def maintain(self) -> None: ...


class Renewals(Timer):
    def __init__(self, manager: Upkept, name: str = "renewals") -> None:
        self.manager, self.name = manager, name

    def next_at(self, now: datetime) -> datetime | None:
        # Asked and not done yet: nothing is due until the pass ends and moves the time
        # (on_schedule_change wakes the clock), else the clock would fire it again at once.
        return None if self.manager.upkeep_pending else self.manager.next_check_at()

    async def fire(self, now: datetime) -> None:
        self.manager.request_upkeep()


async def maintained(clock: Clock, manager: Upkept, name: str = "renewals") -> None:
    """Run `manager`'s upkeep task, due when the clock says, until cancelled."""
    timer = Renewals(manager, name)
    manager.on_schedule_change = clock.wake
    clock.add(timer)
    try:
        await manager.maintain()
    finally:
        clock.remove(timer)
        manager.on_schedule_change = lambda: None
