"""AMQP over WebSockets: `wss://<sandbox>/$servicebus/websocket`, subprotocol `AMQPWSB10`.

Event Hubs accepts AMQP over WebSockets on port 443 for clients behind firewalls
("AMQP 1.0 in Azure Service Bus and Event Hubs protocol guide",
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide; the
OASIS "AMQP WebSocket Binding" names the `AMQPWSB10` subprotocol). The sandbox serves it on
its own HTTPS port: a client passes `custom_endpoint_address=sb://localhost:<sandbox port>`
and `transport_type=TransportType.AmqpOverWebsocket`. Each binary message carries AMQP bytes
into the same engine the TLS listener uses (server.pump).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from ..state import SANDBOX_KEY
from .server import pump

SUBPROTOCOL = "AMQPWSB10"


async def amqp_websocket(request: web.Request) -> web.StreamResponse:
    sb = request.app[SANDBOX_KEY]
    ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=0)
    if not ws.can_prepare(request).ok:
        return web.Response(status=400, text="AMQP over WebSockets needs a WebSocket upgrade (AMQPWSB10).")
    await ws.prepare(request)

    async def receive() -> bytes | None:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                return bytes(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                return None

    async def send(data: bytes) -> None:
        if ws.closed:
            raise ConnectionError("the WebSocket is closed")
        await ws.send_bytes(data)

    await pump(sb.eventhubs, receive, send, transport="websocket")
    await ws.close()
    return ws


def routes() -> list[web.RouteDef]:
    return [web.get("/$servicebus/websocket", amqp_websocket)]
