"""A lean open-loop HTTP/1.1 sender for the throughput ladder: pre-built requests on keep-alive sockets.

Why not aiohttp's client: on a 2-core machine the generator shares the cores with the runtime
it measures, and aiohttp's client spends about as much CPU on a POST as the runtime spends
taking it, so past ~900 POSTs/s the generator, not the runtime, fell behind its schedule (the
answers queued in the client while the runtime's processes had a core to spare). This sender
writes each request as one pre-built bytes object and reads the answer's status line, headers
and body length with no more parsing than that: a few tens of microseconds a POST.

A connection carries one request at a time (no pipelining, like Graph's); a send that finds no
idle connection opens one, so the number of connections follows the number in flight. It keeps
`send_paced`'s contract (bench/loadgen.py): `SendResult` with the same fields.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from .loadgen import SendResult, pace

__all__ = ["send_paced_raw"]


class _Answer(asyncio.Protocol):
    """One keep-alive connection: `ask` writes a request and waits for its status code."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(0)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiting is None:
            return
        head = bytes(self._buffer[:end]).decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value:
                self.closed = True
        if len(self._buffer) < end + 4 + length:
            return
        del self._buffer[:end + 4 + length]
        status = int(head.split(" ", 2)[1])
        if not self._waiting.done():
            self._waiting.set_result(status)

    async def ask(self, request: bytes) -> int:
        assert self._transport is not None
        self._waiting = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiting

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def send_paced_raw(url: str, bodies: list[tuple[list[str], bytes]], posts_per_s: float, *,
                         max_in_flight: int = 256) -> SendResult:
    """POST `bodies` to `url` at a steady `posts_per_s`, open loop (bench/loadgen.py's `pace`)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: ").encode()
    requests = [head + str(len(body)).encode() + b"\r\n\r\n" + body for _, body in bodies]
    loop = asyncio.get_running_loop()
    idle: list[_Answer] = []
    opened: list[_Answer] = []

    async def post(request: bytes) -> int:
        try:
            conn = idle.pop() if idle else None
            if conn is None:
                _, conn = await loop.create_connection(_Answer, host, port)
                opened.append(conn)
            status = await conn.ask(request)
        except OSError:
            return 0
        if not conn.closed:
            idle.append(conn)
        return status

    try:
        return await pace(requests, posts_per_s, post, max_in_flight=max_in_flight)
    finally:
        for conn in opened:
            conn.close()
