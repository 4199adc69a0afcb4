"""The sandbox's clock: real time that tests and benchmarks can speed up or jump.

Graph's delivery rules run on long timers (retries for up to 4 hours, 10-minute
slow and drop windows, subscription lifetimes of days). The emulator keeps
those exact numbers and lets a test run the clock faster instead.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio

from ..graph.times import parse_graph_time, to_graph_time


class Clock:
    """Sandbox time in epoch seconds: `speed` times faster than real, plus jumps."""

    def __init__(self, speed: float = 1.0) -> None:
        self._speed = speed
        self._base_real = time.monotonic()
        self._base_virtual = time.time()

    def now(self) -> float:
        return self._base_virtual + (time.monotonic() - self._base_real) * self._speed

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._base_virtual = self.now()
        self._base_real = time.monotonic()
        self._speed = speed

    def advance(self, seconds: float) -> None:
        """Jump forward; timers waiting in `sleep` notice at their next check."""
        self._base_virtual += seconds

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of sandbox time (re-checks so `advance` and speed changes apply)."""
        deadline = self.now() + seconds
        while (left := deadline - self.now()) > 0:
            await anyio.sleep(min(left / self._speed, 0.25))


iso = to_graph_time
parse_iso = parse_graph_time
