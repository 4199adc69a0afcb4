"""Sponsors' answers to relayed permission prompts: the intake interceptor, and the sponsors' DMs.

`PermissionReplies` sees every confirmed event from a sponsor or an allowed sender before it
is stored (`Intake.intercept`). A sponsor's `yes <id>` / `no <id>` in their one-on-one chat
with the agent, within 10 minutes of the request, is recorded in the permission store and
consumed: the `serve` that owns the request sends the answer to its host. Anything else that
looks like an answer changes nothing, flows on as a chat message, and the sponsor is told
once why. Nobody else is ever answered.

`SponsorDMs` finds a sponsor's one-on-one chat with the agent (POST /chats with two members
returns the existing chat: chat-post) and posts the agent's short notes there, never in a group.
"""

from __future__ import annotations

import html
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import structlog

from ..errors import AgentSeatError
from .inbox_claims import claimant_alive
from .permissions import ATTEMPT, TTL_SECONDS, PermissionStore, Request, parse_reply

if TYPE_CHECKING:
    from ..config import Settings
    from ..graph.client import GraphClient
    from .events import Event
    from .normalize import TrustPolicy

log = structlog.get_logger(__name__)

_MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
_MINUTES = int(TTL_SECONDS // 60)


def _how(request_id: str) -> str:
    return f"reply <b>yes {request_id}</b> or <b>no {request_id}</b>"


# Why a reply did nothing, as the sponsor reads it. Every id in these was matched by
# [a-km-z]{5}, so nothing here needs escaping; the tool name is escaped where used.
_NOTICES = {
    "malformed": lambda rid: f"That did not answer permission request {rid}: {_how(rid)}, nothing else.",
    "group": lambda rid: ("Permission answers count only here, in our one-on-one chat. "
                          f"Nothing was answered; to answer {rid}, {_how(rid)} here."),
    "unknown": lambda rid: f"That names no open permission request. The open one is {rid}: {_how(rid)}.",
    "late": lambda rid: (f"Permission request {rid} has expired (answers count for {_MINUTES} minutes). "
                         "Nothing was answered; Claude Code still shows the prompt on its own screen."),
    "answered": lambda rid: f"Permission request {rid} was already answered; your reply changed nothing.",
    "gone": lambda rid: f"The Claude Code session that asked {rid} has ended; nothing was answered.",
}


class SponsorDMs:
    """Each sponsor's one-on-one chat with the agent, and posting to it."""

    def __init__(self, settings: Settings, graph: GraphClient) -> None:
        self._settings = settings
        self._graph = graph
        self._chats: dict[str, str] = {}  # lowercased sponsor object id -> chat id

    def _bind(self, user: str) -> dict[str, object]:
        # chat-post: members are bound by `user@odata.bind` to the Graph users('{id}') URL.
        url = f"{self._settings.graph_url}/users('{quote(user, safe='@.-_')}')"
        return {"@odata.type": _MEMBER_TYPE, "roles": ["owner"], "user@odata.bind": url}

    async def chat(self, sponsor_id: str) -> str:
        """The sponsor's one-on-one chat with the agent (created if it does not exist yet)."""
        key = sponsor_id.lower()
        if key not in self._chats:
            me = self._settings.agent_user_id or self._settings.agent_user_upn
            body = {"chatType": "oneOnOne", "members": [self._bind(me), self._bind(key)]}
            chat = await self._graph.post("/chats", body)
            self._chats[key] = str(chat["id"])
        return self._chats[key]

    async def send(self, sponsor_id: str, content_html: str) -> tuple[str, str]:
        """Post `content_html` (already escaped) in the sponsor's DM; returns (chat id, message id)."""
        chat_id = await self.chat(sponsor_id)
        msg = await self._graph.post(f"/chats/{quote(chat_id, safe=':@.')}/messages",
                                     {"body": {"contentType": "html", "content": content_html}})
        return chat_id, str(msg.get("id") or "")


class PermissionReplies:
    """The intake interceptor: True (consumed) only for a sponsor's valid, timely answer in their DM."""

    def __init__(self, settings: Settings, graph: GraphClient, policy: TrustPolicy,
                 store: PermissionStore | None = None, dms: SponsorDMs | None = None,
                 audit: Callable[..., object] | None = None) -> None:
        self._policy = policy
        self._audit = audit  # the audit log's append: answers given and answers refused (issue 15)
        self.store = store or PermissionStore(settings.state_dir)
        self.dms = dms or SponsorDMs(settings, graph)

    async def __call__(self, event: Event) -> bool:
        # Cheap test first: the interceptor sees every trusted message, and almost none is an answer.
        # "Within 10 minutes" is judged when the confirmed reply gets here, never earlier than it was sent.
        if event.kind != "teams" or not ATTEMPT.match(event.text):
            return False
        sponsor = event.sender_id.lower()
        # The intake hands over confirmed events only, and a sponsor's are always confirmed
        # (CONTRACTS, invariant 2); checked again because an answer here runs a tool on the host.
        if not event.confirmed or event.trust != "sponsor" or sponsor not in self._policy.sponsor_ids:
            return False  # an allowed colleague's "yes abcde" is just a message: nothing is said to anyone
        try:
            return await self._act(event, sponsor)
        except Exception as exc:  # noqa: BLE001 - a failing relay must not stop the intake
            # Not consumed: the message reaches the agent as any other; the host's own prompt still works.
            log.warning("permission_reply_failed", error=getattr(exc, "message", type(exc).__name__),
                        exc_info=not isinstance(exc, (AgentSeatError, sqlite3.Error)))
            return False

    async def _act(self, event: Event, sponsor: str) -> bool:
        store = self.store
        now = time.time()
        parsed = parse_reply(event.text)
        open_id = await anyio.to_thread.run_sync(store.open_for, sponsor, now)
        if parsed is None:  # starts like an answer, is not one
            if open_id is not None:
                await self._tell(sponsor, open_id, "malformed")
            return False
        behavior, request_id = parsed
        request = await store.aget(request_id)
        if request is None and open_id is None:
            return False  # "no sweat" while nothing is asked: an ordinary message
        if event.chat_id != await self._dm_chat(sponsor):
            await self._tell(sponsor, request_id if request is not None else str(open_id), "group")
            return False
        if request is None:
            await self._tell(sponsor, str(open_id), "unknown")
            return False
        if request.answer_key == event.key:
            return True  # the answer itself, read again (a resync after a restart): still consumed, said once
        refusal = self._refusal(request, now)
        if refusal is None:
            if await anyio.to_thread.run_sync(store.answer, request_id, behavior, sponsor, event.key, now):
                log.info("permission_answered", request_id=request_id, behavior=behavior)
                if self._audit is not None:
                    self._audit("action", "permission_answer", request_id=request_id, behavior=behavior,
                                tool=request.tool_name, sponsor=sponsor)
                word = "Allowed" if behavior == "allow" else "Denied"
                await self._say(sponsor, f"{word}: {html.escape(request.tool_name)} ({request_id}).")
                return True
            # Another answer or the expiry won between the read and the write: say which. The
            # winner may be this very message, read at once by the poller and by a confirmation:
            # then it is the answer, and stays consumed.
            latest = await store.aget(request_id)
            if latest is not None and latest.answer_key == event.key:
                return True
            refusal = self._refusal(latest, now) if latest is not None else "late"
        if refusal in ("late", "gone"):
            await anyio.to_thread.run_sync(store.expire, request_id)
        await self._tell(sponsor, request_id, refusal or "answered")
        return False

    @staticmethod
    def _refusal(request: Request, now: float) -> str | None:
        if request.status in ("allow", "deny", "delivered"):
            return "answered"
        if request.status != "pending" or request.expired(now):
            return "late"
        if not claimant_alive(request.process):
            return "gone"  # nobody would carry the answer to a host
        return None

    async def _dm_chat(self, sponsor: str) -> str:
        """The sponsor's DM with the agent: as recorded when they were asked, else from Graph."""
        return await anyio.to_thread.run_sync(self.store.chat_of, sponsor) or await self.dms.chat(sponsor)

    async def _tell(self, sponsor: str, request_id: str, reason: str) -> None:
        """One short note per request, sponsor and reason: a repeated mistake is not answered twice."""
        log.info("permission_reply_refused", request_id=request_id, reason=reason)
        if self._audit is not None:
            self._audit("refusal", "permission_reply", request_id=request_id, reason=reason, sponsor=sponsor)
        if await anyio.to_thread.run_sync(self.store.first_notice, request_id, sponsor, reason):
            await self._say(sponsor, _NOTICES[reason](request_id))

    async def _say(self, sponsor: str, content_html: str) -> None:
        try:
            await self.dms.send(sponsor, content_html)
        except AgentSeatError as exc:  # the note is a courtesy; the decision stands without it
            log.warning("permission_notice_failed", error=exc.message)
