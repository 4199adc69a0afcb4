"""`/_sandbox/behaviour`: read and change the switchboard (behaviour.py) while the sandbox runs."""

from __future__ import annotations

import json

from aiohttp import web

from ..behaviour import BehaviourError
from ..state import SANDBOX_KEY


async def get_behaviour(request: web.Request) -> web.Response:
    return web.json_response(request.app[SANDBOX_KEY].behaviour.to_json())


async def merge_behaviour(request: web.Request) -> web.Response:
    """Merge the body's keys into the current behaviour; 400 names the first bad key."""
    sb = request.app[SANDBOX_KEY]
    try:
        changes = json.loads(await request.text() or "{}")
        sb.behaviour = sb.behaviour.merged(changes)
    except json.JSONDecodeError as exc:
        return web.json_response({"error": f"the body is not JSON: {exc}"}, status=400)
    except BehaviourError as exc:
        return web.json_response({"error": str(exc), "key": exc.key}, status=400)
    return web.json_response(sb.behaviour.to_json())


def routes() -> list[web.RouteDef]:
    return [web.get("/_sandbox/behaviour", get_behaviour), web.post("/_sandbox/behaviour", merge_behaviour)]
