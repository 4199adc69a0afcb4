"""Graph's documented request limits: token buckets for rates, counters for concurrency.

Limits come from the Microsoft Graph throttling page (throttling-limits,
"Microsoft Teams service limits" and "Outlook service limits"). A request over
a limit gets 429 with a `Retry-After` that may be fractional, as Graph sends
(throttling, "Sample response").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..clock import Clock


@dataclass(frozen=True)
class Limit:
    scope: str  # "user" | "chat" | "mailbox" | "app"
    per_second: float
    burst: float


# Teams (requests per second): GET /me/chats 1 per user; GET /chats/{id}/messages
# 1 per chat; POST /chats/{id}/messages 1 per user and 1 per chat; default GET 1
# per user per resource. Outlook: 10,000 requests per 10 minutes per mailbox.
CHAT_LIST = (Limit("user", 1.0, 1.0),)
CHAT_MESSAGES_GET = (Limit("chat", 1.0, 1.0),)
CHAT_MESSAGES_POST = (Limit("user", 1.0, 1.0), Limit("chat", 1.0, 1.0))
CHAT_CREATE = (Limit("app", 20.0, 20.0),)
CHAT_GET = (Limit("user", 5.0, 5.0),)
OUTLOOK = (Limit("mailbox", 10_000 / 600, 10_000.0),)
SUBSCRIPTIONS = (Limit("app", 500 / 20, 500.0),)  # entrabot-anchor §8: 500 per 20 s per app per tenant


#: Outlook's answer to a request over the concurrency limit (the error real tenants send;
#: throttling-limits, "Outlook service limits": 4 concurrent requests per app ID and mailbox).
MAILBOX_CONCURRENCY_CODE = "ApplicationThrottled"
MAILBOX_CONCURRENCY_MESSAGE = "Application is over its MailboxConcurrency limit."
#: The docs give no Retry-After for it; a slot frees when any request finishes, so a short one.
MAILBOX_CONCURRENCY_RETRY_AFTER = 1.0


class MailboxConcurrency:
    """Requests in flight per (app ID, mailbox): Outlook evaluates its limits per that pair."""

    def __init__(self) -> None:
        self._in_flight: Counter[tuple[str, str]] = Counter()

    def arrive(self, app_id: str, mailbox: str) -> int:
        """Count one more request in flight; returns how many there are now, this one included."""
        key = (app_id, mailbox)
        self._in_flight[key] += 1
        return self._in_flight[key]

    def leave(self, app_id: str, mailbox: str) -> None:
        key = (app_id, mailbox)
        self._in_flight[key] -= 1
        if self._in_flight[key] <= 0:
            del self._in_flight[key]


class Throttle:
    """Token buckets keyed by (route, scope, key) on the sandbox clock, and mailbox concurrency."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (tokens, updated)
        self.enabled = True
        self.mailboxes = MailboxConcurrency()  # never reset: requests in flight finish on their own

    def check(self, route: str, limits: tuple[Limit, ...], keys: dict[str, str]) -> float | None:
        """Take one token from every bucket; return seconds to wait if any is empty."""
        if not self.enabled or not limits:
            return None
        now = self._clock.now()
        pending: list[tuple[tuple[str, str, str], float]] = []
        wait = 0.0
        for limit in limits:
            bucket_key = (route, limit.scope, keys.get(limit.scope, "-"))
            tokens, updated = self._buckets.get(bucket_key, (limit.burst, now))
            tokens = min(limit.burst, tokens + (now - updated) * limit.per_second)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / limit.per_second)
            pending.append((bucket_key, tokens))
        if wait > 0:
            for bucket_key, tokens in pending:
                self._buckets[bucket_key] = (tokens, now)
            return round(max(wait, 0.001), 3)
        for bucket_key, tokens in pending:
            self._buckets[bucket_key] = (tokens - 1.0, now)
        return None

    def reset(self) -> None:
        self._buckets.clear()
