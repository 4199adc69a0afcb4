"""The MCP wire on stdout, written from the event loop without a worker thread.

mcp's default stdio transport writes every message through `anyio.wrap_file`:
two worker-thread hops per push (write, then flush), which the benchmark's
profile showed as the largest single cost of a channel push. This writer owns a
private, non-blocking copy of fd 1 and writes to it directly, waiting for the
pipe only when the host reads slowly. fd 1 itself points at stderr while we
serve, so a stray `print` or a child process can never corrupt the wire.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class PipeWriter:
    """Just enough of `anyio.AsyncFile` for `mcp.server.stdio.stdio_server(stdout=...)`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)  # the host is behind: wait, don't spin
                continue
            data = data[written:]

    async def flush(self) -> None:
        """Nothing is buffered: each write reached the pipe."""


@contextmanager
def claimed_stdout() -> Iterator[PipeWriter]:
    """Take fd 1 for the protocol and point the process's fd 1 at stderr until exit."""
    sys.stdout.flush()
    private = os.dup(1)
    os.set_inheritable(private, False)
    os.dup2(2, 1)
    was_blocking = os.get_blocking(private)
    os.set_blocking(private, False)
    try:
        yield PipeWriter(private)
    finally:
        os.set_blocking(private, was_blocking)
        os.dup2(private, 1)
        os.close(private)
