"""When a refusal may only mean "not replicated yet", and how long to believe that.

New grants, keys and directory objects take from 30 seconds to a few minutes to
reach the token endpoint and Graph: Entra answers AADSTS errors (unknown
application, unknown key, no consent, no such user) and Graph answers 403, or
404 on an id that was just created. A runtime started right after `agentseat
setup` meets exactly that, and must not give up on it.

The rule (one for Graph and the token chain):

- A window opens when the runtime starts, and again when it changes a grant or a
  key itself (`note_change`); it lasts `AGENTSEAT_REPLICATION_GRACE_SECONDS`
  (default 300).
- Inside the window, a 403, or a replication AADSTS code, is retried with backoff
  only while that kind of call has not succeeded since the window opened. Once it
  has, the grant was visible, so a later refusal is a real one (a revoked
  permission surfaces at once, as before).
- A 404 is retried only when the URL names one of the agent's own objects (the
  ids `setup` just created, or ids marked with `learned`), within the grace of
  learning it and until a call naming it succeeds.
- Past the window every refusal is final, with the error it always had.

Retries stay inside the caller's own deadline (a Graph request's
`AGENTSEAT_GRAPH_DEADLINE_SECONDS`) and never outlast the window, so startup
cannot block forever. This module decides; the Graph client and the token
provider wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

#: Entra codes that a fresh object, key or consent produces until it has replicated.
REPLICATION_AADSTS: dict[str, str] = {
    "AADSTS700016": "the application may not have reached the token endpoint yet",
    "AADSTS7000215": "a new credential may not have reached the token endpoint yet",
    "AADSTS7000229": "the new service principal may not have reached the token endpoint yet",
    "AADSTS700027": "a new certificate may not have reached the token endpoint yet",
    "AADSTS65001": "a new consent grant may not have reached the token endpoint yet",
    "AADSTS50034": "the new Agent User may not have reached the token endpoint yet",
}
_BACKOFF_CAP = 15.0


def call_kind(method: str, route: str, body: Any = None) -> str:
    """What a permission covers: reads or writes of one resource shape, ids blanked.

    A subscription's permission depends on the resource it watches, so that is part
    of the kind of a POST /subscriptions.
    """
    kind = f"{'read' if method.upper() == 'GET' else 'write'} {_shape(route)}"
    if isinstance(body, dict) and isinstance(body.get("resource"), str) and _shape(route) == "/subscriptions":
        kind += f" {_shape(body['resource'])}"
    return kind


def _segments(route: str) -> list[str]:
    return [unquote(p) for p in route.split("?", 1)[0].split("/") if p]


def _shape(route: str) -> str:
    # A name is letters and dots (me, chats, mailFolders, microsoft.graph.agentIdentity);
    # anything with digits, colons, @ or dashes is an id, and ids are blanked.
    return "/" + "/".join(p if p.replace(".", "").isalpha() else "{}" for p in _segments(route))


def backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1, 2, ...): doubling from 1 s, capped, jittered."""
    base = min(_BACKOFF_CAP, 2.0 ** (attempt - 1))
    return random.uniform(base / 2, base)


class ReplicationGrace:
    """The replication window of one runtime: what may still be replicating, and for how long."""

    def __init__(self, grace_seconds: float, *, own_ids: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_seconds = max(0.0, grace_seconds)
        self._clock = clock
        self._opened = clock()
        self._succeeded: set[str] = set()
        self._fresh: dict[str, float] = {}  # lower-cased id -> when it was learned
        self.learned(*own_ids)

    # --- what happened ------------------------------------------------------------------
    def note_change(self) -> None:
        """The runtime changed a grant or a key: what worked before proves nothing about it."""
        self._opened = self._clock()
        self._succeeded.clear()

    def learned(self, *ids: str) -> None:
        """Ids just created or learned: a 404 naming one may only mean it has not replicated."""
        now = self._clock()
        for item in ids:
            if item:
                self._fresh[item.lower()] = now

    def graph_succeeded(self, method: str, route: str, body: Any = None) -> None:
        if self._fresh:
            for part in _segments(route):
                self._fresh.pop(part.lower(), None)  # Graph knows it: replicated
        if self._open():
            self._succeeded.add(call_kind(method, route, body))

    def token_succeeded(self, resource: str) -> None:
        if self._open():
            self._succeeded.add(f"token {resource}")

    # --- what to make of a refusal ----------------------------------------------------------
    def remaining(self) -> float:
        """Seconds left in the window (0 once it is over)."""
        return max(0.0, self._opened + self.grace_seconds - self._clock())

    def graph_reason(self, method: str, route: str, status: int, body: Any = None) -> str | None:
        """Why a Graph 403/404 may be replication, or None if it is final."""
        if status == 403 and self._open() and call_kind(method, route, body) not in self._succeeded:
            return "a new permission grant may not have replicated to Graph yet"
        if status == 404:
            now = self._clock()
            for part in _segments(route):
                learned = self._fresh.get(part.lower())
                if learned is not None and now - learned < self.grace_seconds:
                    return "a newly created object may not have replicated to Graph yet"
        return None

    def graph_window(self, route: str, status: int) -> float:
        """Seconds a Graph refusal may still be retried for."""
        if status == 404:
            now = self._clock()
            learned = [self._fresh[p.lower()] for p in _segments(route) if p.lower() in self._fresh]
            return max((t + self.grace_seconds - now for t in learned), default=0.0)
        return self.remaining()

    def token_reason(self, resource: str, code: str | None) -> str | None:
        """Why a token-chain error may be replication, or None if it is final."""
        if code in REPLICATION_AADSTS and self._open() and f"token {resource}" not in self._succeeded:
            return REPLICATION_AADSTS[code]
        return None

    def outlasted(self, resource: str, code: str | None) -> bool:
        """A replication-kind token error for a resource that never worked while the window was open.

        The window may close while the first attempt is still under way (a slow token
        endpoint, a loaded machine); the error is then final, but it is still the one
        the grace was waiting out, and the message should say so.
        """
        return (code in REPLICATION_AADSTS and self.grace_seconds > 0 and not self._open()
                and f"token {resource}" not in self._succeeded)

    def _open(self) -> bool:
        return self.remaining() > 0
