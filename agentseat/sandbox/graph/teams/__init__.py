"""Teams, channels and channel messages in the sandbox's Graph.

`store` owns the tenant data helpers (make a team, find a channel a caller may use,
post into a channel and notify), `resources` the Graph JSON, `teams` the team and
channel routes, `messages` the channel message routes (posts and replies), `hosted` their
inline images.
"""

from __future__ import annotations

from aiohttp import web

from . import hosted, messages, teams


def routes() -> list[web.RouteDef]:
    return [*teams.routes(), *messages.routes(), *hosted.routes()]
