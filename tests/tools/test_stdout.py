"""The MCP wire: messages written at once when the pipe is idle, queued behind a write under way,
never cut in half, and refused once the host has gone."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification

from agentseat.tools.stdout import PipeWriter, WireStream


def _message(n: int, size: int = 10) -> SessionMessage:
    return SessionMessage(JSONRPCNotification(jsonrpc="2.0", method="notifications/claude/channel",
                                              params={"content": "x" * size, "meta": {"n": str(n)}}))


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose write end is non-blocking, as the wire's copy of fd 1 is."""
    read, write = os.pipe()
    os.set_blocking(write, False)
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_lines(fd: int, count: int, *, after: float = 0.0) -> list[dict]:
    """In a worker thread: `count` whole lines from `fd` (blocking), starting `after` seconds late."""
    time.sleep(after)
    data = b""
    while data.count(b"\n") < count:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        data += chunk
    return [json.loads(line) for line in data.decode().splitlines()]


async def test_a_message_reaches_the_pipe_before_send_returns(pipe: tuple[int, int]) -> None:
    read, write = pipe
    await WireStream(PipeWriter(write)).send(_message(1))  # no writer task had to run
    assert [m["params"]["meta"]["n"] for m in _read_lines(read, 1)] == ["1"]


async def test_messages_sent_during_a_slow_write_follow_it_whole_and_in_order(pipe: tuple[int, int]) -> None:
    read, write = pipe
    wire = WireStream(PipeWriter(write))
    async with anyio.create_task_group() as tg:
        # More than the pipe holds: the first write waits for the reader.
        tg.start_soon(wire.send, _message(0, size=200_000))
        await anyio.wait_all_tasks_blocked()
        for n in range(1, 6):
            with anyio.fail_after(1):
                await wire.send(_message(n))  # queued behind the write under way: no waiting
        received = await anyio.to_thread.run_sync(_read_lines, read, 6)
    assert [m["params"]["meta"]["n"] for m in received] == [str(n) for n in range(6)]


async def test_a_cancelled_sender_never_leaves_half_a_message_on_the_wire(pipe: tuple[int, int]) -> None:
    read, write = pipe
    wire = WireStream(PipeWriter(write))
    lines: list[dict] = []

    async def read_late() -> None:  # starts reading only after the sender's deadline passed
        lines.extend(await anyio.to_thread.run_sync(lambda: _read_lines(read, 2, after=0.3)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_late)
        with anyio.move_on_after(0.1):
            await wire.send(_message(0, size=200_000))  # blocked on the full pipe past the deadline
        await wire.send(_message(1))
    assert [m["params"]["meta"]["n"] for m in lines] == ["0", "1"]  # both whole
    assert len(lines[0]["params"]["content"]) == 200_000


async def test_after_the_host_goes_every_send_is_refused(pipe: tuple[int, int]) -> None:
    read, write = pipe
    wire = WireStream(PipeWriter(write))
    os.close(read)
    with pytest.raises(anyio.BrokenResourceError):
        await wire.send(_message(1))
    with pytest.raises(anyio.BrokenResourceError):
        await wire.send(_message(2))
    await wire.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await wire.send(_message(3))
