"""Display names of the teams and channels this process has seen, for the channel push's first line.

Names are whatever Graph listed last (joinedTeams, channels); a push whose team or channel
this process never listed shows the id instead. Names are set by a team's members, so they
are cleaned like any other line people wrote before they reach the model.
"""

from __future__ import annotations

_teams: dict[str, str] = {}
_channels: dict[tuple[str, str], str] = {}
#: Enough for any tenant the agent is in; past it, the oldest names go (a push then shows ids).
_CAP = 2000


def remember(team_id: str, team_name: str, channel_id: str = "", channel_name: str = "") -> None:
    if team_name:
        _teams[team_id] = team_name
    if channel_id and channel_name:
        _channels[(team_id, channel_id)] = channel_name
    for table in (_teams, _channels):
        while len(table) > _CAP:
            table.pop(next(iter(table)))


def team_name(team_id: str) -> str:
    return _teams.get(team_id, "")


def channel_name(team_id: str, channel_id: str) -> str:
    return _channels.get((team_id, channel_id), "")
