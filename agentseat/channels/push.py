"""What a `channel` event adds to the host push (tools/channel.py builds the rest).

Meta keys (the contract): kind "channel", team_id, channel_id, thread_id (the root post: the
reply's thread, or the post itself) and message_id, beside the usual user, user_id and ts;
`mentioned` says whether the line names the agent. The first line of content names the team
and channel, so the model can tell where to answer (post_channel_message with reply_to).
"""

from __future__ import annotations

import re

from ..runtime.events import Event
from ..tools.base import neutralise
from . import names

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _line(value: str, limit: int = 120) -> str:
    return neutralise(_CONTROL.sub(" ", value)).strip()[:limit]


def thread_of(event: Event) -> str:
    """The root post of the event's thread: what post_channel_message takes as reply_to."""
    return event.thread_id or event.message_id


def channel_head(event: Event, who: str) -> str:
    """"Teams channel post from X in <team>/<channel>" (a reply says so)."""
    team = _line(names.team_name(event.team_id) or event.team_id)
    channel = _line(names.channel_name(event.team_id, event.chat_id or "") or event.chat_id or "")
    what = "reply" if event.thread_id else "post"
    return f"Teams channel {what} from {who} in {team}/{channel}"


def channel_meta(event: Event) -> dict[str, str]:
    return {"team_id": _line(event.team_id, 200), "channel_id": _line(event.chat_id or "", 200),
            "thread_id": _line(thread_of(event), 200), "mentioned": "true" if event.mentioned else "false"}
