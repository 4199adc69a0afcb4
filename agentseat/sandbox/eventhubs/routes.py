"""`GET /_sandbox/eventhubs`: the emulated namespace, its hubs and partitions, and how to connect.

The answer names the endpoint (`sb://localhost:PORT`, the SDK's `custom_endpoint_address`),
the CA bundle that verifies its certificate, the SAS key name and connection strings
(the namespace key is the sandbox's own throwaway secret), and per partition the
last sequence number, offset and enqueued time. `traffic` has the AMQP frames and bytes
each way, per connection and in total since the sandbox started (traffic.py).
"""

from __future__ import annotations

from aiohttp import web

from ..state import SANDBOX_KEY
from . import websocket


async def eventhubs_info(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    return web.json_response(sb.eventhubs.snapshot())


def routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/eventhubs", eventhubs_info), *websocket.routes()]
