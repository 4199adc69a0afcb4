"""The behaviour switchboard: every variant Microsoft's docs leave open, chosen per run.

Where the docs are silent or contradict each other, a real tenant may do any of
several things, so the sandbox can do each of them and the runtime must survive
all. `GET /_sandbox/behaviour` shows the values, `POST` merges a JSON object into
them, and `agentseat sandbox --behaviour FILE.json` starts with them. This module
owns the values, their validation and the random draws; the services that act on
them (Entra, Graph routes, delivery) read them from the shared state.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import ConfigError

AUDIENCES = ("agent_identity", "blueprint", "none")
KINDS = ("chat", "mail")
#: z-scores: a log-normal draw whose median is p50 reaches p99 at 2.326 sigma, and its
#: stated maximum (Graph's delivery delays) is taken as the 99.9th percentile.
_Z99, _Z999 = 2.326, 3.090


class BehaviourError(ValueError):
    """A behaviour key is unknown or has the wrong type; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"behaviour '{key}': {problem}")
        self.key = key


@dataclass(frozen=True)
class Behaviour:
    #: `aud` of the validation tokens in rich notifications, or `none` for `validationTokens: null`
    #: (change-notifications-with-resource-data, "How to validate", does not say which).
    validation_token_audience: str = "agent_identity"
    #: The subscription resource page says 4,320; older pages and entrabot's tenants say 60.
    chat_subscription_max_minutes: int = 4320
    #: `rejected`: 400 for `$orderby` on /me/chats and /users/{id}/chats, as entrabot reports.
    chats_orderby: str = "supported"
    #: `ignored`: `$filter` on a chat's messages is accepted and not applied.
    messages_filter: str = "supported"
    #: New grants, keys and directory objects stay invisible to the token endpoint and Graph this long.
    replication_delay_seconds: float = 0.0
    #: The Agent User's mailbox and Teams presence answer as not provisioned this long after it is
    #: created or licensed, whichever is later (Entra "agent users": licensing starts provisioning).
    mailbox_ready_after_seconds: float = 0.0
    #: `blueprint_only`: the generic /applications/{id}/addKey and removeKey answer 404 for a Blueprint.
    blueprint_key_route: str = "both"
    #: [p50, p99] in ms, drawn for every Graph and token response.
    graph_latency_ms: tuple[float, float] = (0.0, 0.0)
    #: {"chat": [p50, max], "mail": [p50, max]} in ms, before each notification is delivered.
    delivery_delay_ms: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {kind: (0.0, 0.0) for kind in KINDS})
    #: Outlook allows 4 concurrent requests per mailbox; beyond this, 429 ApplicationThrottled.
    outlook_max_concurrency: int = 4
    #: driveitem-createlink: "Anonymous link support may be disabled by an administrator"; the
    #: sandbox tenant's administrator has, until a test says `enabled`.
    anonymous_sharing_links: str = "disabled"
    #: The largest Microsoft Search page (`size`): searchRequest says "The maximum value is 500";
    #: search-api-overview says "The upper limit for SharePoint or OneDrive items is 1000".
    search_max_size: int = 500

    def merged(self, changes: Mapping[str, Any]) -> Behaviour:
        """A copy with `changes` applied; raises `BehaviourError` naming the first bad key."""
        if not isinstance(changes, Mapping):
            raise BehaviourError("(body)", "must be a JSON object")
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for key, raw in changes.items():
            if key not in known:
                raise BehaviourError(key, f"unknown key; known keys: {', '.join(sorted(known))}")
            values[key] = _CHECKS[key](self, key, raw)
        return replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["graph_latency_ms"] = list(self.graph_latency_ms)
        data["delivery_delay_ms"] = {kind: list(pair) for kind, pair in self.delivery_delay_ms.items()}
        return data

    def graph_delay(self, rng: random.Random | None = None) -> float:
        """Seconds to hold one Graph or token response."""
        p50, p99 = self.graph_latency_ms
        return _lognormal(p50, p99, _Z99, rng) / 1000

    def delivery_delay(self, kind: str, rng: random.Random | None = None) -> float:
        """Seconds to hold one notification of `kind` ("chat" or "mail") before it is sent."""
        p50, most = self.delivery_delay_ms.get(kind, (0.0, 0.0))
        return min(_lognormal(p50, most, _Z999, rng), most) / 1000


def load_behaviour_file(path: Path) -> dict[str, Any]:
    """Read and check a `--behaviour` file; a `ConfigError` says what to fix."""
    try:
        changes = json.loads(Path(path).read_text(encoding="utf-8"))
        Behaviour().merged(changes)
    except OSError as exc:
        raise ConfigError(f"cannot read the behaviour file {path}: {exc.strerror}",
                          hint="pass a readable JSON file to --behaviour") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the behaviour file {path} is not JSON: {exc}",
                          hint='write one JSON object, e.g. {"chats_orderby": "rejected"}') from exc
    except BehaviourError as exc:
        raise ConfigError(f"the behaviour file {path}: {exc}",
                          hint="see GET /_sandbox/behaviour for the keys and their current values") from exc
    return changes


def _lognormal(p50: float, high: float, z: float, rng: random.Random | None) -> float:
    if high <= 0:
        return 0.0
    if p50 <= 0:  # no median given: spread evenly up to the high mark
        return (rng or random).uniform(0, high)
    if high <= p50:
        return p50
    sigma = math.log(high / p50) / z
    return (rng or random).lognormvariate(math.log(p50), sigma)


def _choice(options: tuple[str, ...]) -> Callable[[Behaviour, str, Any], str]:
    def check(_: Behaviour, key: str, raw: Any) -> str:
        if raw not in options:
            raise BehaviourError(key, f"must be one of {', '.join(options)}; got {raw!r}")
        return raw
    return check


def _whole(minimum: int) -> Callable[[Behaviour, str, Any], int]:
    def check(_: Behaviour, key: str, raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
            raise BehaviourError(key, f"must be an integer of at least {minimum}; got {raw!r}")
        return raw
    return check


def _seconds(_: Behaviour, key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0 or not math.isfinite(raw):
        raise BehaviourError(key, f"must be a number of seconds, 0 or more; got {raw!r}")
    return float(raw)


def _range(key: str, raw: Any, labels: str) -> tuple[float, float]:
    ok = (isinstance(raw, list | tuple) and len(raw) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 600_000 for v in raw))
    if not ok or raw[0] > raw[1]:
        raise BehaviourError(key, f"must be [{labels}] in milliseconds, 0 to 600000, the first not above the second; "
                                  f"got {raw!r}")
    return (float(raw[0]), float(raw[1]))


def _latency(_: Behaviour, key: str, raw: Any) -> tuple[float, float]:
    return _range(key, raw, "p50, p99")


def _delivery(current: Behaviour, key: str, raw: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(raw, Mapping):
        raise BehaviourError(key, 'must be an object like {"chat": [p50, max], "mail": [p50, max]}')
    merged = dict(current.delivery_delay_ms)
    for kind, pair in raw.items():
        if kind not in KINDS:
            raise BehaviourError(f"{key}.{kind}", f"unknown kind; known kinds: {', '.join(KINDS)}")
        merged[kind] = _range(f"{key}.{kind}", pair, "p50, max")
    return merged


_CHECKS: dict[str, Callable[[Behaviour, str, Any], Any]] = {
    "validation_token_audience": _choice(AUDIENCES),
    "chat_subscription_max_minutes": _whole(1),
    "chats_orderby": _choice(("supported", "rejected")),
    "messages_filter": _choice(("supported", "ignored")),
    "replication_delay_seconds": _seconds,
    "mailbox_ready_after_seconds": _seconds,
    "blueprint_key_route": _choice(("blueprint_only", "both")),
    "graph_latency_ms": _latency,
    "delivery_delay_ms": _delivery,
    "outlook_max_concurrency": _whole(1),
    "anonymous_sharing_links": _choice(("disabled", "enabled")),
    "search_max_size": _whole(1),
}
