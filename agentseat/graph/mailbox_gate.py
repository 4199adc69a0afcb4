"""At most four Graph requests in flight per mailbox, as Outlook allows.

Outlook evaluates its limits per app ID and mailbox: 10,000 requests per 10
minutes and 4 concurrent requests (throttling-limits, "Outlook service limits").
The fifth request in flight is refused with 429 `ApplicationThrottled`,
"Application is over its MailboxConcurrency limit." This module owns which
mailbox a URL addresses and a per-mailbox gate that keeps the client under the
limit. Other processes of the same agent (an MCP server beside the bot) count
against the same limit, so a refusal lowers the gate for a while.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import anyio
import structlog

log = structlog.get_logger(__name__)

#: Outlook's documented concurrency limit per app ID and mailbox.
OUTLOOK_MAX_CONCURRENCY = 4
#: After a refusal the gate stays lowered this long, then opens one slot per quiet period.
RECOVER_AFTER_SECONDS = 60.0

#: First path segments (after /me or /users/{id}) that Outlook serves; lower case.
_OUTLOOK_SEGMENTS = frozenset({
    "messages", "mailfolders", "sendmail", "events", "calendar", "calendars", "calendarview", "calendargroups",
    "contacts", "contactfolders", "mailboxsettings", "outlook", "inferenceclassification", "findmeetingtimes",
    "reminderview", "microsoft.graph.sendmail",
})
ME = "me"


def mailbox_of(route: str, me: Iterable[str] = ()) -> str | None:
    """The mailbox `route` (a path under the Graph base) addresses, or None if it is not Outlook's.

    `/me/...` is the signed-in user's; `/users/{id or UPN}/...` is that user's, and names
    in `me` (the Agent User's id and UPN) are the same mailbox as `/me`.
    """
    parts = [p for p in route.split("?", 1)[0].split("/") if p]
    if not parts:
        return None
    if parts[0].lower() == ME:
        owner, rest = ME, parts[1:]
    elif parts[0].lower() == "users" and len(parts) >= 2:
        owner = unquote(parts[1]).strip("'\"").lower()
        owner = ME if owner in {m.lower() for m in me} else owner
        rest = parts[2:]
    else:
        return None
    return owner if rest and rest[0].lower() in _OUTLOOK_SEGMENTS else None


def is_concurrency_refusal(status: int, body: object) -> bool:
    """Outlook's 429 for too many requests in flight (not its 10,000-per-10-minutes one)."""
    if status != 429 or not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    return "mailboxconcurrency" in str(body["error"].get("message", "")).lower()


@dataclass
class _Mailbox:
    capacity: int
    in_flight: int = 0
    peak: int = 0
    lowered_at: float = 0.0
    waiters: deque[anyio.Event] = field(default_factory=deque)


class MailboxGate:
    """Per-mailbox slots, first come first served; cancellation-safe."""

    def __init__(self, limit: int = OUTLOOK_MAX_CONCURRENCY, *, recover_after: float = RECOVER_AFTER_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._recover_after = recover_after
        self._clock = clock
        self._boxes: dict[str, _Mailbox] = {}

    def _box(self, mailbox: str) -> _Mailbox:
        box = self._boxes.get(mailbox)
        if box is None:
            box = self._boxes[mailbox] = _Mailbox(self.limit)
        return box

    def capacity(self, mailbox: str) -> int:
        """How many requests the gate lets into `mailbox` at once right now."""
        return self._box(mailbox).capacity

    def peak(self, mailbox: str) -> int:
        """The most requests this client had in flight to `mailbox` at once."""
        return self._box(mailbox).peak

    @asynccontextmanager
    async def slot(self, mailbox: str | None) -> AsyncIterator[None]:
        """Hold one of `mailbox`'s slots for the body; no gate when `mailbox` is None."""
        if mailbox is None:
            yield
            return
        box = self._box(mailbox)
        await self._acquire(box)
        try:
            yield
        finally:
            self._release(box)

    def refused(self, mailbox: str | None) -> None:
        """Outlook said the mailbox is over its concurrency limit: someone else (another
        process of this agent) holds slots too, so let one fewer in for a while."""
        if mailbox is None:
            return
        box = self._box(mailbox)
        box.lowered_at = self._clock()
        if box.capacity > 1:
            box.capacity -= 1
            log.info("mailbox_gate_lowered", mailbox=_shown(mailbox), capacity=box.capacity)

    async def _acquire(self, box: _Mailbox) -> None:
        if box.in_flight < box.capacity and not box.waiters:
            self._enter(box)
            return
        event = anyio.Event()
        box.waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._release(box)  # handed a slot while being cancelled: pass it on
            else:
                box.waiters.remove(event)
            raise

    def _enter(self, box: _Mailbox) -> None:
        box.in_flight += 1
        box.peak = max(box.peak, box.in_flight)

    def _release(self, box: _Mailbox) -> None:
        box.in_flight -= 1
        if box.capacity < self.limit and self._clock() - box.lowered_at >= self._recover_after:
            box.capacity += 1  # quiet for a while: open one slot again
            box.lowered_at = self._clock()
        while box.waiters and box.in_flight < box.capacity:
            self._enter(box)  # the slot passes to the next waiter, already counted
            box.waiters.popleft().set()


def _shown(mailbox: str) -> str:
    return mailbox if mailbox == ME else mailbox[:8] + "…"
