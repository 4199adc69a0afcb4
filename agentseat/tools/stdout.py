"""The MCP wire on stdout, written from the event loop without a worker thread.

mcp's default stdio transport writes every message through `anyio.wrap_file`:
two worker-thread hops per push (write, then flush), which the benchmark's
profile showed as the largest single cost of a channel push. This writer owns a
private, non-blocking copy of fd 1 and writes to it directly, waiting for the
pipe only when the host reads slowly. fd 1 itself points at stderr while we
serve, so a stray `print` or a child process can never corrupt the wire.

The SDK's write stream is also a rendezvous (no buffer): each message waits for
its writer task, two trips round the event loop per push, and a channel sink
pushing a batch waited that long for every event (bench/throughput.py, batch 20).
`batched_writes` gives the server a buffered stream instead, and its one writer
puts whatever is waiting on the pipe in one write, serialised as the SDK does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import anyio
import structlog

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp.shared.message import SessionMessage

log = structlog.get_logger(__name__)

#: Messages the server may have waiting for the pipe; past it, senders wait (the host reads slowly).
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


@asynccontextmanager
async def batched_writes(wire: PipeWriter) -> AsyncIterator[MemoryObjectSendStream[SessionMessage]]:
    """The server's write stream: buffered, and written by one task, everything waiting at once.

    On leaving, what is still buffered is written first. A host that went away (a broken
    pipe) fails the senders from then on (`BrokenResourceError`), as the SDK's writer would.
    """
    send, receive = anyio.create_memory_object_stream["SessionMessage"](WRITE_BUFFER)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_write_all, wire, receive)
        async with send:
            yield send


async def _write_all(wire: PipeWriter, receive: MemoryObjectReceiveStream[SessionMessage]) -> None:
    async with receive:
        async for first in receive:
            lines = [_line(first)]
            while True:
                try:
                    lines.append(_line(receive.receive_nowait()))
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            try:
                await wire.write("".join(lines))
            except OSError as exc:  # the host closed its end: nothing more can reach it
                log.info("mcp_stdout_closed", error=type(exc).__name__)
                return


def _line(message: SessionMessage) -> str:
    # As mcp.server.stdio's writer serialises a message.
    return message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
