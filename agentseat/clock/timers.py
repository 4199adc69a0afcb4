"""The runtime's periodic duties as timers of the clock: one place owns time.

`Reconcile`: behind webhooks, every `AGENTSEAT_RECONCILE_SECONDS`, ask the poller for one
read of chats and of mail (what a lost notification hid). The poller's resync workers run
it; the clock only says when.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from .scheduler import Now, Timer

__all__ = ["Reconcile"]


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
