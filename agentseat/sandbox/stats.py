"""Counters the control API reports at `GET /_sandbox/stats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # "GET /me/chats" -> n
    tokens: Counter[str] = field(default_factory=Counter)  # grant kind -> n
    token_errors: Counter[str] = field(default_factory=Counter)
    notifications: Counter[str] = field(default_factory=Counter)  # sent, retried, failed, dropped, ...
    throttled: Counter[str] = field(default_factory=Counter)
    #: mailbox id -> the most requests it had in flight at once (refused ones included), so a
    #: test sees how many a client attempted side by side, not only how many Outlook allowed.
    mailbox_in_flight_peak: Counter[str] = field(default_factory=Counter)

    def in_flight(self, mailbox: str, count: int) -> None:
        if count > self.mailbox_in_flight_peak[mailbox]:
            self.mailbox_in_flight_peak[mailbox] = count

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "tokens": dict(self.tokens),
            "tokens_total": sum(self.tokens.values()),
            "token_errors": dict(self.token_errors),
            "notifications": {
                k: self.notifications.get(k, 0)
                for k in sorted({"sent", "retried", "failed", "dropped", "duplicated", "items", *self.notifications})
            },
            "throttled": dict(self.throttled),
            "mailbox_in_flight_peak": dict(self.mailbox_in_flight_peak),
        }

    def reset(self) -> None:
        for counter in (self.requests, self.tokens, self.token_errors, self.notifications, self.throttled,
                        self.mailbox_in_flight_peak):
            counter.clear()
