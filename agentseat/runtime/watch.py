"""`agentseat watch`: the runtime with one sink that prints each event as a JSON line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

import anyio

from .bus import follow

if TYPE_CHECKING:
    from .app import Runtime


def json_lines_sink(stream: TextIO | None = None, *, sink: str = "watch"):  # noqa: ANN201 - returns a Sink
    """A sink printing one compact JSON object per event, flushed at once (for pipes)."""

    async def run(runtime: Runtime) -> None:
        out = stream or sys.stdout
        async for event in follow(runtime.inbox, sink):
            out.write(event.to_json() + "\n")
            out.flush()

    return run


async def watch(runtime: Runtime) -> None:
    await runtime.run([json_lines_sink()])


def run_watch(runtime: Runtime) -> None:
    anyio.run(watch, runtime)
