"""AMQP traffic of the emulated namespace: frames and bytes, both directions, per connection.

What an idle Event Hubs consumer costs on the wire (heartbeats, load balancing, token
renewals) is a figure `python -m bench` reports, so the namespace counts it the way a
service's metrics would (Event Hubs shows incoming/outgoing bytes per namespace).

- Bytes are the AMQP stream where it meets the engine (server.pump): after the frame
  padding on the way out, before TLS or WebSocket framing. Protocol headers count.
- Frames are proton's own counts (`Transport.frames_input` / `frames_output`): every SASL
  and AMQP frame, empty keep-alive frames included.
- "In" is client -> namespace, "out" namespace -> client.

A closed connection's counts stay in the namespace totals; the last `CLOSED_KEPT`
closed connections are still listed, so a client that reconnects shows as both.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proton import Transport

#: Closed connections still listed in the snapshot (their counts are in the totals either way).
CLOSED_KEPT = 20
_FIELDS = ("bytes_in", "bytes_out", "frames_in", "frames_out")


@dataclass
class ConnectionTraffic:
    """One client connection's counters; `engine` is its proton transport while it is open."""

    id: int
    transport: str  # "amqps" or "websocket"
    opened_ms: int
    engine: Transport | None = None
    closed_ms: int | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0

    def sync(self) -> None:
        """Read proton's frame counts (they only grow while the engine lives)."""
        if self.engine is not None:
            self.frames_in, self.frames_out = self.engine.frames_input, self.engine.frames_output

    def as_dict(self) -> dict[str, Any]:
        self.sync()
        return {"id": self.id, "transport": self.transport, "openedAtMs": self.opened_ms,
                "closedAtMs": self.closed_ms, **_counts(self)}


def _counts(c: Any) -> dict[str, int]:
    return {"bytesIn": c.bytes_in, "bytesOut": c.bytes_out, "framesIn": c.frames_in, "framesOut": c.frames_out}


@dataclass
class _Totals:
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0


class Traffic:
    """The namespace's counters: open connections, recently closed ones, and totals since start."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self._ids = itertools.count(1)
        self.live: dict[int, ConnectionTraffic] = {}
        self.closed: deque[ConnectionTraffic] = deque(maxlen=CLOSED_KEPT)
        self._closed_totals = _Totals()
        self.opened = 0

    def open(self, transport: str, engine: Transport) -> ConnectionTraffic:
        conn = ConnectionTraffic(next(self._ids), transport, self._now_ms(), engine)
        self.live[conn.id] = conn
        self.opened += 1
        return conn

    def close(self, conn: ConnectionTraffic) -> None:
        if self.live.pop(conn.id, None) is None:
            return
        conn.sync()
        conn.engine, conn.closed_ms = None, self._now_ms()
        for name in _FIELDS:
            setattr(self._closed_totals, name, getattr(self._closed_totals, name) + getattr(conn, name))
        self.closed.append(conn)

    def snapshot(self) -> dict[str, Any]:
        """The `traffic` object of `GET /_sandbox/eventhubs`."""
        live = [c.as_dict() for c in self.live.values()]
        totals = _Totals(**{name: getattr(self._closed_totals, name) for name in _FIELDS})
        for c in self.live.values():
            for name in _FIELDS:
                setattr(totals, name, getattr(totals, name) + getattr(c, name))
        return {**_counts(totals), "connectionsOpened": self.opened, "connectionsOpen": len(live),
                "connections": live + [c.as_dict() for c in self.closed]}
