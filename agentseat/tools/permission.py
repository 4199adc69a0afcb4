"""The MCP side of the permission relay: Claude Code's permission prompts, asked of the sponsors in Teams.

With `claude/channel/permission` declared, Claude Code sends
`notifications/claude/channel/permission_request` when a tool needs approval
(claude-code-host §4). This server DMs each sponsor in their one-on-one chat with the agent,
records the request in the shared permission store, waits for the answer the owner's intake
interceptor records there (runtime/permission_replies.py), and sends it to its own host as
`notifications/claude/channel/permission`. Claude Code keeps its own prompt on screen too:
whichever answer comes first counts, so a request nobody answers here costs nothing.

It does not read replies (the interceptor does) or decide who is a sponsor (the runtime does).
"""

from __future__ import annotations

import html
import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import mcp_types as types
import structlog
from pydantic import Field

from ..errors import AgentSeatError
from ..runtime.permission_replies import SponsorDMs
from ..runtime.permissions import REQUEST_ID, TTL_SECONDS, PermissionStore

if TYPE_CHECKING:
    from mcp.server import Server
    from mcp.server.session import ServerSession

    from ..config import Settings
    from ..runtime.app import Runtime

log = structlog.get_logger(__name__)

#: Declared beside "claude/channel": the host then relays its permission prompts (claude-code-host §4).
CAPABILITY: dict[str, dict[str, Any]] = {"claude/channel/permission": {}}
REQUEST_METHOD = "notifications/claude/channel/permission_request"
METHOD = "notifications/claude/channel/permission"
#: What of the prompt a sponsor reads in Teams; a whole file write would bury the question.
MAX_TOOL, MAX_DESCRIPTION, MAX_PREVIEW = 100, 300, 400
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINES = re.compile(r"\s*\n\s*")


# MCP models name fields in camelCase on the wire; these notifications use snake_case
# (claude-code-host §4), so every two-word field carries its wire name as its alias.
class PermissionRequestParams(types.NotificationParams):
    """What Claude Code asks; an id of another shape is dropped before it reaches a sponsor."""

    request_id: str = Field(alias="request_id", pattern=REQUEST_ID.pattern)
    tool_name: str = Field(alias="tool_name")
    description: str
    input_preview: str = Field(alias="input_preview")


class PermissionParams(types.NotificationParams):
    request_id: str = Field(alias="request_id")
    behavior: Literal["allow", "deny"]


class PermissionNotification(types.Notification[PermissionParams,
                                                Literal["notifications/claude/channel/permission"]]):
    """The answer to a relayed prompt, as a typed MCP notification."""

    method: Literal["notifications/claude/channel/permission"] = METHOD


def _shown(text: str, limit: int) -> str:
    """`text` as inert Teams HTML: one line, control characters gone, cut at `limit`, escaped."""
    line = _CONTROL.sub("", _LINES.sub(" ⏎ ", text.strip()))
    if len(line) > limit:
        line = line[:limit].rstrip() + f"… [{len(line) - limit} more characters]"
    return html.escape(line, quote=True)


def question(params: PermissionRequestParams) -> str:
    """The DM a sponsor gets: what is asked and how to answer. Only escaped text from the host."""
    rid = params.request_id  # [a-km-z]{5}: safe as it is
    minutes = int(TTL_SECONDS // 60)
    return (f"<b>Claude Code asks for permission</b> (request {rid})<br>"
            f"Tool: <b>{_shown(params.tool_name, MAX_TOOL)}</b><br>"
            f"What: {_shown(params.description, MAX_DESCRIPTION) or '(no description)'}<br>"
            f"Input: <code>{_shown(params.input_preview, MAX_PREVIEW) or '(none)'}</code><br>"
            f"Reply <b>yes {rid}</b> to allow or <b>no {rid}</b> to deny, here in this chat, "
            f"within {minutes} minutes.")


class PermissionRelay:
    """Takes the host's permission requests and answers them with what a sponsor replied in Teams.

    Register it on the MCP server (`install`) and run it as a runtime sink: requests are
    queued by the notification handler (which must return at once) and relayed here.
    """

    def __init__(self, state_dir: Path, *, claimant: str | None = None) -> None:
        self._state_dir = state_dir  # the store is opened when the relay runs: building it does no I/O
        # The same host:pid form the inbox uses: the interceptor checks the asking process still runs.
        self.claimant = claimant or f"{socket.gethostname()}:{os.getpid()}"
        self._send, self._recv = anyio.create_memory_object_stream[tuple[PermissionRequestParams, Any]](100)

    @classmethod
    def for_settings(cls, settings: Settings) -> PermissionRelay | None:
        """The relay, or None when `AGENTSEAT_PERMISSION_RELAY=0` turns it off."""
        return cls(settings.state_dir) if settings.permission_relay else None

    def install(self, server: Server[Any]) -> None:
        server.add_notification_handler(REQUEST_METHOD, PermissionRequestParams, self.on_request)

    async def on_request(self, ctx: Any, params: PermissionRequestParams) -> None:
        try:
            self._send.send_nowait((params, ctx.session))
        except anyio.WouldBlock:  # a flood; the host still shows its own prompt
            log.warning("permission_request_dropped", request_id=params.request_id, reason="queue_full")

    async def __call__(self, runtime: Runtime) -> None:
        """A runtime sink: relays each request in its own task, until cancelled."""
        store = await anyio.to_thread.run_sync(PermissionStore, self._state_dir)
        dms = SponsorDMs(runtime.settings, runtime.graph)
        async with anyio.create_task_group() as tg, self._recv:
            async for params, session in self._recv:
                tg.start_soon(self._guarded, runtime, store, dms, params, session)

    async def _guarded(self, runtime: Runtime, store: PermissionStore, dms: SponsorDMs,
                       params: PermissionRequestParams, session: ServerSession) -> None:
        try:
            await self._relay(runtime, store, dms, params, session)
        except Exception as exc:  # noqa: BLE001 - one failed relay must not stop the runtime beside it
            log.warning("permission_relay_failed", request_id=params.request_id, error=type(exc).__name__,
                        exc_info=not isinstance(exc, AgentSeatError))

    async def _relay(self, runtime: Runtime, store: PermissionStore, dms: SponsorDMs,
                     params: PermissionRequestParams, session: ServerSession) -> None:
        rid = params.request_id
        if not await anyio.to_thread.run_sync(store.add, rid, self.claimant, params.tool_name[:MAX_TOOL]):
            log.warning("permission_request_dropped", request_id=rid, reason="duplicate_id")
            return
        await runtime.sponsors_known()
        asked = 0
        for sponsor in sorted(runtime.policy.sponsor_ids):
            try:
                chat_id = await dms.chat(sponsor)
                # Recorded before the DM goes out, so even an instant answer finds its chat.
                await anyio.to_thread.run_sync(store.asked, rid, sponsor, chat_id)
                await dms.send(sponsor, question(params))
                asked += 1
            except AgentSeatError as exc:
                log.warning("permission_ask_failed", request_id=rid, error=exc.message)
        if not asked:
            log.warning("permission_request_unasked", request_id=rid, sponsors=len(runtime.policy.sponsor_ids))
            await anyio.to_thread.run_sync(store.expire, rid)
            return
        log.info("permission_request_relayed", request_id=rid, sponsors=asked)
        behavior = await store.wait_answer(rid)
        if behavior is None:
            log.info("permission_request_expired", request_id=rid)
            return
        notification = PermissionNotification(params=PermissionParams(request_id=rid, behavior=behavior))
        try:
            # Typed to the spec's closed union; at run time any Notification model is sent (see channel.py).
            await session.send_notification(notification)  # type: ignore[arg-type]
        except Exception as exc:  # the host went away: nothing else can carry the answer
            log.warning("permission_answer_undelivered", request_id=rid, error=type(exc).__name__)
            return
        await anyio.to_thread.run_sync(store.finish, rid, "delivered")
        log.info("permission_answer_sent", request_id=rid, behavior=behavior)
