"""The MCP wire on stdout, written from the event loop without a worker thread.

mcp's default stdio transport writes every message through `anyio.wrap_file`:
two worker-thread hops per push (write, then flush), which the benchmark's
profile showed as the largest single cost of a channel push. This writer owns a
private, non-blocking copy of fd 1 and writes to it directly, waiting for the
pipe only when the host reads slowly. fd 1 itself points at stderr while we
serve, so a stray `print` or a child process can never corrupt the wire.

The SDK's write stream is also a rendezvous (no buffer) with a writer task: each
message waits for that task, and the task runs only after whatever the loop had
queued before it (the rest of a webhook POST, say). `WireStream` is the server's
write stream instead: the sender that finds the pipe idle writes its message at once,
and messages sent while a write is under way are queued and go out together in the
next one, serialised as the SDK does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from mcp.shared.message import SessionMessage

log = structlog.get_logger(__name__)

#: Messages that may wait for the pipe behind a write under way; past it, senders wait.
WRITE_BUFFER = 512


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


class WireStream:
    """The MCP server's write stream (what `serve_loop` sends on), written straight to `wire`.

    `send` writes when no write is under way, and otherwise queues; the writing sender then
    writes the queue too before it returns, so nothing waits for a task switch. Past
    `WRITE_BUFFER` queued messages a sender waits (the host reads slowly). A write, once
    begun, is never cut short by a cancellation: half a message would corrupt the wire.
    A host gone (a broken pipe) fails every later send with `BrokenResourceError`.
    """

    def __init__(self, wire: PipeWriter) -> None:
        self._wire = wire
        self._queued: list[str] = []
        self._writing = False
        self._drained = anyio.Event()
        self._broken = False
        self._closed = False

    async def send(self, message: SessionMessage) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError
        line = _line(message)
        if self._writing:
            while len(self._queued) >= WRITE_BUFFER and self._writing:
                await self._drained.wait()
            if self._writing:
                self._queued.append(line)
                return
        await self._write(line)

    async def _write(self, data: str) -> None:
        self._writing = True
        try:
            with anyio.CancelScope(shield=True):
                while True:
                    await self._wire.write(data)
                    if not self._queued:
                        break
                    data, self._queued = "".join(self._queued), []
        except OSError as exc:  # the host closed its end: nothing more can reach it
            self._broken = True
            self._queued = []
            log.info("mcp_stdout_closed", error=type(exc).__name__)
            raise anyio.BrokenResourceError from exc
        finally:
            self._writing = False
            drained, self._drained = self._drained, anyio.Event()
            drained.set()

    async def aclose(self) -> None:
        self._closed = True

    def close(self) -> None:
        self._closed = True

    async def __aenter__(self) -> WireStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _line(message: SessionMessage) -> str:
    # As mcp.server.stdio's writer serialises a message.
    return message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
