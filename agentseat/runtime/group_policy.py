"""`AGENTSEAT_GROUP_POLICY`: which group-chat messages are pushed to the agent.

People in a group chat talk to each other; pushing every line would make the agent answer
conversations that are not for it. With `mention` (the default) a group or meeting chat's
message is pushed only when it @mentions the agent or comes from a sponsor; with `all`, every
one is. One-on-one chats and mail are always pushed; team channel posts only when they @mention
the agent or come from a sponsor. Nothing here changes what is stored: every
message stays in the inbox (`read_events`, `read_teams_messages`). The channel sink and the bot
both ask `pushes`, so a bot answers in a group only when a person would expect it to.
"""

from __future__ import annotations

from typing import Literal

from .events import Event

GroupPolicy = Literal["mention", "all"]
GROUP_CHAT_TYPES = ("group", "meeting")


def is_group(event: Event) -> bool:
    return event.kind == "teams" and event.chat_type in GROUP_CHAT_TYPES


def pushes(event: Event, policy: GroupPolicy) -> bool:
    """Whether `event` is pushed (channel) or handled (bot) under `policy`."""
    if event.kind == "channel":
        # A team channel is a room of many conversations: only a line addressed to the agent (an
        # @mention) or a sponsor's is pushed, whatever the group policy (issue 12, "Team channels").
        return event.mentioned or event.trust == "sponsor"
    if policy == "all" or not is_group(event):
        return True
    return event.mentioned or event.trust == "sponsor"
