"""Client-side pacing that keeps us under Graph's documented per-route limits.

Graph throttles Teams per user and per chat (throttling-limits, "Microsoft
Teams service limits"): 1 request/s per user on GET /me/chats, 1 per chat on
GET /chats/{id}/messages, and 1 message sent per second per user and per
chat. Waiting here is cheaper than a 429 and its Retry-After.
"""

from __future__ import annotations

import re
import time

import anyio

# (method, path regex, key template, minimum interval in seconds)
_RULES: tuple[tuple[str, re.Pattern[str], str, float], ...] = (
    ("POST", re.compile(r"^/chats/([^/]+)/messages$"), "send", 1.0),
    ("POST", re.compile(r"^/chats/([^/]+)/messages$"), "send-chat:{0}", 1.0),
    ("GET", re.compile(r"^/(?:me/)?chats$"), "list-chats", 1.0),
    ("GET", re.compile(r"^/(?:me/)?chats/([^/]+)/messages$"), "read-chat:{0}", 1.0),
)


def route_keys(method: str, path: str) -> list[tuple[str, float]]:
    """The pacing keys a request falls under (path relative to the version root, no query)."""
    keys = []
    for rule_method, pattern, template, interval in _RULES:
        if method == rule_method and (match := pattern.match(path)):
            keys.append((template.format(*match.groups()), interval))
    return keys


class RateLimiter:
    """Spaces requests sharing a key at least `interval` seconds apart, in arrival order."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = anyio.Lock()

    async def wait(self, method: str, path: str) -> None:
        keys = route_keys(method, path)
        if not keys:
            return
        async with self._lock:
            now = time.monotonic()
            start = max([now, *(self._next.get(k, 0.0) for k, _ in keys)])
            for key, interval in keys:
                self._next[key] = start + interval
        if (delay := start - time.monotonic()) > 0:
            await anyio.sleep(delay)
