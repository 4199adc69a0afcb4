"""Fault injection for tests and benchmarks (`POST /_sandbox/faults`).

Notification faults act on the delivery engine (drop, duplicate, delay,
reorder); Graph faults answer a share of requests on matching routes with 429
or a 5xx before any handler runs; upload faults break the next fragment PUTs
to upload-session URLs (a 5xx, or a dropped connection) so a client must resume. A Graph fault with a `count` answers only the
next that many matching requests (a 403 or 404 for the next N calls is how a
test shows a grant or object that has not replicated yet). All randomness is
seeded, so a failing run can be replayed.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RouteFault:
    pattern: str  # fnmatch over "METHOD /path/template", e.g. "GET /me/chats" or "* /chats/*"
    rate: float  # 0..1
    status: int  # 403, 404, 429, 500, 502, 503, 504
    retry_after: float | None = None
    count: int | None = None  # answer only the next `count` matching requests (None: no end)


@dataclass
class UploadFault:
    """The next `count` fragment PUTs to upload URLs fail: with `status` (a 5xx, nothing kept), or,
    with `drop`, the connection is cut after part of the fragment arrives (nothing of it kept either)."""

    count: int
    status: int = 503
    drop: bool = False


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: float = 0.0
    reorder: float = 0.0  # chance a batch is held back and sent after the next one
    routes: list[RouteFault] = field(default_factory=list)
    uploads: UploadFault | None = None
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        notif = data.get("notifications", data)
        routes = [
            RouteFault(
                pattern=str(r.get("route", "*")),
                # "the next N calls" means every one of them unless a rate says otherwise
                rate=float(r.get("rate", 1.0 if r.get("count") is not None else 0)),
                status=int(r.get("status", 429)),
                retry_after=None if r.get("retry_after") is None else float(r["retry_after"]),
                count=None if r.get("count") is None else _count(r["count"]),
            )
            for r in data.get("graph", [])
        ]
        for name in ("drop", "duplicate", "reorder"):
            value = float(notif.get(name, 0.0))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        uploads = None
        if (raw := data.get("uploads")) is not None:
            if not isinstance(raw, dict):
                raise ValueError('uploads must be an object like {"count": 2, "status": 503} or {"count": 1, '
                                 '"drop": true}')
            uploads = UploadFault(count=_count(raw.get("count", 1)), status=int(raw.get("status", 503)),
                                  drop=bool(raw.get("drop", False)))
            if uploads.status not in (500, 502, 503, 504):
                raise ValueError("uploads status must be one of 500, 502, 503, 504")
        faults = cls(
            uploads=uploads,
            drop=float(notif.get("drop", 0.0)),
            duplicate=float(notif.get("duplicate", 0.0)),
            delay_ms=float(notif.get("delay_ms", 0.0)),
            reorder=float(notif.get("reorder", 0.0)),
            routes=routes,
            seed=data.get("seed"),
        )
        faults.rng = random.Random(faults.seed)
        return faults

    def to_json(self) -> dict[str, Any]:
        return {
            "notifications": {
                "drop": self.drop, "duplicate": self.duplicate, "delay_ms": self.delay_ms, "reorder": self.reorder
            },
            "graph": [r.__dict__ for r in self.routes],
            "uploads": None if self.uploads is None else self.uploads.__dict__,
            "seed": self.seed,
        }

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def route_fault(self, route: str) -> RouteFault | None:
        for fault in self.routes:
            if fault.count == 0 or not fnmatch.fnmatchcase(route, fault.pattern):
                continue
            if self.chance(fault.rate):
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None


    def upload_fault(self) -> UploadFault | None:
        """The fault for this fragment PUT, if one is still armed (graph/drive/upload.py)."""
        if self.uploads is None or self.uploads.count <= 0:
            return None
        self.uploads.count -= 1
        return self.uploads


def _count(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"count must be a whole number of at least 1, got {raw!r}")
    return raw
