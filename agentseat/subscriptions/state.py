"""One subscription's state as the manager keeps it, and how it is saved in the inbox's meta table."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class SubscriptionState:
    kind: str
    id: str = ""
    expires: float = 0.0  # epoch seconds
    url: str = ""
    state: str = "pending"  # pending | active | refused
    error: str = ""
    client_state: str = field(default="", repr=False)  # this subscription's own secret
    rich: bool = True  # made with includeResourceData (what the pipeline expects of its items)
    refusals: int = 0  # refusals in a row, for the backoff
    retry_at: float = 0.0  # epoch seconds: when a refused kind is asked for again


def load_states(raw: str | None, legacy_secret: str) -> dict[str, SubscriptionState]:
    """Saved states by kind; fields a newer version added are dropped, and a subscription saved
    before each had its own secret gets the old shared one."""
    if not raw:
        return {}
    names = {f.name for f in fields(SubscriptionState)}
    out: dict[str, SubscriptionState] = {}
    for kind, data in json.loads(raw).items():
        state = SubscriptionState(**{k: v for k, v in data.items() if k in names})
        if state.id and not state.client_state:
            state.client_state = legacy_secret
        out[kind] = state
    return out


def dump_states(states: dict[str, SubscriptionState]) -> str:
    return json.dumps({k: asdict(v) for k, v in states.items()})


def next_check_seconds(states: Iterable[SubscriptionState], now: float, *, least: float, most: float) -> float:
    """Seconds until the next look: a quarter of an active subscription's remaining life
    (renewal is due well before expiry), or a refused kind's retry time; within [least, most]."""
    waits = [(s.expires - now) / 4 if s.state == "active" else s.retry_at - now for s in states]
    return min([most, *(max(least, w) for w in waits)])


def describe_states(states: dict[str, SubscriptionState], spec_of: Callable[[str], Any]) -> dict[str, Any]:
    """What `status` shows of each kind's subscription (never its clientState)."""
    return {k: {"state": s.state, "id": s.id, "expires": s.expires, "error": s.error,
                "minutes": spec_of(k).minutes, "rich": spec_of(k).rich,
                **({"retry_at": s.retry_at} if s.state == "refused" else {})} for k, s in states.items()}
