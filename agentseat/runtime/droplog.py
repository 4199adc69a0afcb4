"""Drops and their log lines: what the notification pipeline refused, logged once per window.

Keys are bounded (a drop names one of our subscriptions or a fixed word, never
sender text), so a flood of forgeries costs one line per reason and minute.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

__all__ = ["DROP_LOG_WINDOW", "Drop", "DropLog", "grouped"]

log = structlog.get_logger(__name__)

#: Drop-log window: one line per (reason, subscription) per this many seconds.
DROP_LOG_WINDOW = 60.0
_DROP_LOG_KEYS = 512


@dataclass(frozen=True, slots=True)
class Drop:
    """An item (or body) dropped. `subscription` is one of ours, `unknown` or `-`: never sender text."""

    reason: str
    subscription: str = "-"
    items: int = 1
    claimed: str | None = None  # an unknown subscription's id, kept only if it is a GUID


class DropLog:
    """Logs a drop once per (reason, subscription) per window and counts the rest.

    Keys are bounded: `subscription` is one of ours or a fixed word, never sender
    text. The counts suppressed in a window are reported with the next line.
    """

    def __init__(self, *, window: float = DROP_LOG_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._entries: dict[tuple[str, str], list[float]] = {}  # key -> [opened_at, posts, items]

    def record(self, drop: Drop, *, endpoint: str, event: str = "notification_dropped") -> bool:
        """Log `drop` as `event` unless its key was logged this window; True if a line was written."""
        now = self._clock()
        key = (drop.reason, drop.subscription)
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._window:
            entry[1] += 1
            entry[2] += drop.items
            return False
        if len(self._entries) >= _DROP_LOG_KEYS:  # forget closed windows; if none closed, start over
            live = {k: e for k, e in self._entries.items() if now - e[0] < self._window}
            self._entries = live if len(live) < _DROP_LOG_KEYS else {}
        self._entries[key] = [now, 0, 0]
        # Never the clientState, a token, encrypted data or message text: ids, reason and counts only.
        log.warning(
            event,
            reason=drop.reason,
            subscription=drop.subscription,
            claimed_subscription=drop.claimed,
            items=drop.items,
            endpoint=endpoint,
            suppressed_posts=int(entry[1]) if entry else 0,
            suppressed_items=int(entry[2]) if entry else 0,
        )
        return True


def grouped(drops: Iterable[Drop]) -> list[Drop]:
    counts: dict[tuple[str, str], Drop] = {}
    for drop in drops:
        key = (drop.reason, drop.subscription)
        seen = counts.get(key)
        counts[key] = drop if seen is None else dataclasses.replace(seen, items=seen.items + drop.items)
    return list(counts.values())
