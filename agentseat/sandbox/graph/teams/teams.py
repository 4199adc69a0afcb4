"""Joined teams, a team, and its channels in the sandbox's Graph.

Permissions and limits from user-list-joinedteams (delegated Team.ReadBasic.All; no OData query
options), team-get, channel-list and channel-get (delegated Channel.ReadBasic.All), and
throttling-limits, "Microsoft Teams service limits".
"""

from __future__ import annotations

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route, principal
from ..chats import resolve_path_user
from ..query import graph_errors
from ..throttle import Limit
from .resources import channel_json, team_json
from .store import channel_for, team_for

TEAM_SCOPES = ("Team.ReadBasic.All", "TeamSettings.Read.All", "TeamSettings.ReadWrite.All", "User.Read.All",
               "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
TEAM_ROLES = ("Team.ReadBasic.All", "TeamSettings.Read.All", "TeamSettings.ReadWrite.All")
CHANNEL_SCOPES = ("Channel.ReadBasic.All", "ChannelSettings.Read.All", "ChannelSettings.ReadWrite.All",
                  "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")
CHANNEL_ROLES = ("ChannelSettings.Read.Group", "Channel.ReadBasic.All", "ChannelSettings.Read.All",
                 "ChannelSettings.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All")
#: throttling-limits: "GET /teams/{team-id}, joinedTeams" 30 rps per app per tenant;
#: "GET /teams/{team-id}/channels" 60 rps per app per tenant.
TEAMS_GET = (Limit("app", 30.0, 30.0),)
CHANNELS_GET = (Limit("app", 60.0, 60.0),)


def _viewer(request: web.Request) -> str | None:
    who = principal(request)
    return who.oid if who.kind == "user" else None


async def _joined(request: web.Request, user_id: str) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    teams = sorted((t for t in sb.tenant.teams.values() if user_id in t.member_ids), key=lambda t: t.created)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#teams",
                                   [team_json(sb, t) for t in teams], **{"@odata.count": len(teams)}))


@graph_route(scopes=TEAM_SCOPES, limits=TEAMS_GET, delegated_only=True)
@graph_errors
async def my_joined_teams(request: web.Request) -> web.Response:
    """GET /me/joinedTeams: the teams the signed-in user is a direct member of."""
    return await _joined(request, principal(request).oid)


@graph_route(scopes=TEAM_SCOPES, roles=TEAM_ROLES, limits=TEAMS_GET)
@graph_errors
async def user_joined_teams(request: web.Request) -> web.Response:
    """GET /users/{id | userPrincipalName}/joinedTeams."""
    return await _joined(request, resolve_path_user(request).id)


@graph_route(scopes=TEAM_SCOPES, roles=TEAM_ROLES, limits=TEAMS_GET)
@graph_errors
async def get_team(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    team = team_for(sb, request.match_info["team_id"], _viewer(request))
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#teams/$entity",
                              **team_json(sb, team)})


@graph_route(scopes=CHANNEL_SCOPES, roles=CHANNEL_ROLES, limits=CHANNELS_GET)
@graph_errors
async def list_channels(request: web.Request) -> web.Response:
    """GET /teams/{team-id}/channels; every channel here is standard, so every member sees all."""
    sb = request.app[SANDBOX_KEY]
    team = team_for(sb, request.match_info["team_id"], _viewer(request))
    values = [channel_json(sb, team, c) for c in team.channels]
    context = f"https://graph.microsoft.com/v1.0/$metadata#teams('{team.id}')/channels"
    return web.json_response(odata(context, values, **{"@odata.count": len(values)}))


@graph_route(scopes=CHANNEL_SCOPES, roles=CHANNEL_ROLES, limits=TEAMS_GET)
@graph_errors
async def get_channel(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    team, channel = channel_for(sb, request.match_info["team_id"], request.match_info["channel_id"], _viewer(request))
    context = f"https://graph.microsoft.com/v1.0/$metadata#teams('{team.id}')/channels/$entity"
    return web.json_response({"@odata.context": context, **channel_json(sb, team, channel)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1.0/me/joinedTeams", my_joined_teams),
        web.get("/v1.0/users/{user_id}/joinedTeams", user_joined_teams),
        web.get("/v1.0/teams/{team_id}", get_team),
        web.get("/v1.0/teams/{team_id}/channels", list_channels),
        web.get("/v1.0/teams/{team_id}/channels/{channel_id}", get_channel),
    ]
