"""The AMQPS listener: TLS with Python's ssl, proton's engine per connection, padded frames out.

The sandbox's server certificate (pki.py, valid for `localhost` and 127.0.0.1)
serves TLS from the first byte, as Event Hubs does on 5671 ("AMQP 1.0 in Azure
Service Bus and Event Hubs protocol guide", https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide: TLS, then SASL
(ANONYMOUS, credentials following by CBS) and the AMQP header).
Each connection runs two tasks on the sandbox's event loop: one feeds received
bytes to proton, one writes proton's output through the frame padder
(frames.py) and ticks proton's idle timer. The listener lives in the task group
`run` is started in, so it stops with the sandbox.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import structlog
from anyio.abc import ByteStream
from anyio.streams.tls import TLSListener

from .connection import AmqpConnection
from .emulator import EventHubs
from .frames import FramePadder

log = structlog.get_logger(__name__)

_READ = 65536
#: How a peer that went away shows up: a TLS stream ended mid-write raises EndOfStream.
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError, OSError)


async def run(emulator: EventHubs, host: str, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Listen on a loopback port until cancelled; `emulator.port` is set before `started`."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
    emulator.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    tls = TLSListener(listener, emulator.sb.ssl_context(), standard_compatible=False)
    log.info("eventhubs_listening", endpoint=emulator.endpoint, namespace=emulator.namespace.fqdn)
    task_status.started()
    async with tls:
        await tls.serve(lambda stream: _serve(emulator, stream))


async def _serve(emulator: EventHubs, stream: ByteStream) -> None:
    async def receive() -> bytes | None:
        try:
            return await stream.receive(_READ)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            return None

    try:
        await pump(emulator, receive, stream.send)
    except _GONE as exc:  # one client's dropped connection must never stop the listener (and the sandbox)
        log.info("eventhubs_peer_gone", error=type(exc).__name__)
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except Exception:  # the peer may be gone already
                pass


async def pump(emulator: EventHubs, receive: Callable[[], Awaitable[bytes | None]],
               send: Callable[[bytes], Awaitable[None]], *, transport: str = "amqps") -> None:
    """Run one AMQP connection over a byte transport (TLS socket or WebSocket) until either side ends it.

    `receive` returns None at the end of the input; `send` raises when the peer is gone.
    Bytes each way are counted in the namespace's traffic (traffic.py), under `transport`.
    """
    wake = anyio.Event()

    def poke() -> None:
        wake.set()

    conn = AmqpConnection(emulator, on_output=poke)
    emulator.connections.add(conn)
    counted = emulator.traffic.open(transport, conn.transport)
    padder = FramePadder()
    done = anyio.Event()

    async def reader() -> None:
        try:
            while not done.is_set():
                data = await receive()
                if data is None:
                    conn.transport.close_tail()
                    conn.process()
                    return
                counted.bytes_in += len(data)
                view = memoryview(data)
                while view:
                    # proton takes input only up to its capacity; the rest waits for it to make room.
                    room = conn.transport.capacity()
                    if room < 0:
                        return
                    if room == 0:
                        poke()
                        await anyio.sleep(0.005)
                        continue
                    conn.transport.push(bytes(view[:room]))
                    view = view[room:]
                    conn.process()
                    poke()
        finally:
            poke()

    async def writer() -> None:
        nonlocal wake
        while True:
            conn.process()
            pending = conn.transport.pending()
            if pending < 0:
                break
            if pending > 0:
                out = conn.transport.peek(pending) or b""
                conn.transport.pop(len(out))
                padded = padder.feed(out)
                if padded:
                    try:
                        await send(padded)
                    except _GONE:  # the peer vanished (kill -9): this connection is over, nothing else
                        break
                    counted.bytes_out += len(padded)
                continue
            deadline = conn.transport.tick(time.monotonic())
            wait = max(0.05, min(deadline - time.monotonic(), 5.0)) if deadline else 5.0
            wake = anyio.Event()
            with anyio.move_on_after(wait):
                await wake.wait()
        done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await writer()
            tg.cancel_scope.cancel()
    finally:
        emulator.connections.discard(conn)
        emulator.traffic.close(counted)
        log.info("eventhubs_connection_closed")
