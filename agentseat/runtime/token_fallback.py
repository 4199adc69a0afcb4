"""Notifications whose validation tokens do not verify: fetched from Graph instead, capped, counted.

Which `aud` Graph puts in the validation tokens of an Agent Identity's delegated
subscription is not documented (change-notifications-with-resource-data, "How to
validate"): the Agent Identity's app id, its Blueprint's, or no tokens at all
(`validationTokens` is "Optional", changeNotificationCollection). Dropping such
items would silently turn webhooks into a daily reconcile. An item whose
subscription id and clientState match is therefore not dropped when its tokens
fail: its encrypted content is not trusted, and the message it names is read from
Graph with the agent's own token, which is where trust comes from anyway.

A sender that somehow holds the clientState could use this to make us read Graph,
so each kind gets at most `per_minute` fallbacks per minute; the excess is logged,
counted and left to one coalesced resync of the kind (nothing is lost: the resync
lists the same messages). This module owns that budget, the counts `status`
shows, and the tenant fact `validation_tokens` (the claims seen: ids, never a token).
It does not parse, verify or fetch anything.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from agentseat.tenant_facts import TenantFacts

    from .verify import TokenReport

__all__ = ["FACT_KEY", "TOKEN_FALLBACKS_PER_MINUTE", "TokenFallbacks"]

log = structlog.get_logger(__name__)

FACT_KEY = "validation_tokens"
#: Fallback reads per kind per minute. A real agent gets far fewer messages; the
#: fetch queues' own rate (runtime/fetchq.py) stays under Graph's limits beside it.
TOKEN_FALLBACKS_PER_MINUTE = 60
_WINDOW = 60.0
#: A changed observation is written at most this often, so a sender flipping between
#: "no tokens" and a replayed genuine one cannot turn every POST into a file write.
_FACT_WRITE_GAP = 10.0

#: (kind, reason) -> ask for one coalesced resync of that kind (the poller's `resync_soon`).
Capped = Callable[[str, str], Any]


class TokenFallbacks:
    """The fallback budget per kind, the counters, and the `validation_tokens` fact."""

    def __init__(self, *, facts: TenantFacts | None = None, per_minute: int = TOKEN_FALLBACKS_PER_MINUTE,
                 on_capped: Capped | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._facts = facts
        self._per_minute = per_minute
        self._on_capped = on_capped
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # kind -> (window start, fallbacks in it)
        self._recorded: dict[str, Any] | None = None
        self._recorded_at = float("-inf")
        self.counters: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def observe(self, report: TokenReport | None) -> None:
        """Count one POST's token outcome and record the claims seen as a tenant fact."""
        if report is None:
            return
        self.counters["tokens_verified" if report.reason is None else "tokens_failed"] += 1
        seen = report.seen
        if seen is None or self._facts is None or seen == self._recorded:
            return
        now = self._clock()
        if now - self._recorded_at < _FACT_WRITE_GAP:
            return
        self._recorded, self._recorded_at = seen, now
        self._facts.record(FACT_KEY, seen)

    def admit(self, kind: str, reason: str) -> bool:
        """May one more item of `kind` fall back to a Graph read? False past the cap (and a resync is asked)."""
        now = self._clock()
        start, used = self._windows.get(kind, (now, 0))
        if now - start >= _WINDOW:
            start, used = now, 0
        if used >= self._per_minute:
            self.counters["token_fallbacks_capped"] += 1
            self._windows[kind] = (start, used)
            if self._on_capped is not None:
                self._on_capped(kind, "token_fallback_capped")
            return False
        self._windows[kind] = (start, used + 1)
        self.counters["token_fallbacks"] += 1
        self.reasons[reason] += 1
        return True

    def snapshot(self) -> dict[str, Any]:
        """What `status` shows under "notifications"."""
        return {
            "tokens_verified": self.counters["tokens_verified"],
            "tokens_failed": self.counters["tokens_failed"],
            "token_fallbacks": self.counters["token_fallbacks"],
            "token_fallbacks_capped": self.counters["token_fallbacks_capped"],
            "token_fallback_reasons": dict(self.reasons),
            "token_fallbacks_per_minute": self._per_minute,
        }
