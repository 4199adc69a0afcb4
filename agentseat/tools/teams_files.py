"""`files` on `send_teams_message` and `reply_in_chat`: local files into a Teams message.

Every path is checked first (attachments/outbound.py), so one refusal sends nothing. An image
(PNG, JPEG, GIF) goes inline as a hostedContent, referenced from the html body by its
temporaryId (chat-post-messages, "Send message with inline image"). Any other file, or an image
too large to inline, is uploaded to the agent's OneDrive chat files folder, shared read-only
with the chat's members, and attached as a `reference` whose id is the GUID in the driveItem's
eTag (chat-post-messages, "Send a message with file attachment"), as Teams itself does.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import structlog

from ..attachments.outbound import INLINE_IMAGE_MAX, LocalFile, check_files
from ..errors import GraphError, ToolInputError
from ..graph import drive
from .mentions import chat_members

if TYPE_CHECKING:
    from ..runtime.app import Runtime

log = structlog.get_logger(__name__)


@dataclass
class Outgoing:
    """What the files add to a message: body html, hostedContents and attachments, and a summary."""

    html: str = ""
    hosted: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` (a chatMessage to POST) with the files in it; its body becomes html."""
        body = payload["body"]
        content = body["content"]
        if body.get("contentType") != "html":
            content = html.escape(content, quote=False).replace("\n", "<br>")
        out = {**payload, "body": {"contentType": "html", "content": content + self.html}}
        if self.hosted:
            out["hostedContents"] = self.hosted
        if self.attachments:
            out["attachments"] = [*payload.get("attachments", []), *self.attachments]
        return out


class OutgoingFiles:
    def __init__(self, runtime: Runtime) -> None:
        self._graph = runtime.graph
        self._settings = runtime.settings  # read only when a tool runs: a not-ready server has none

    async def check(self, paths: list[str]) -> list[LocalFile]:
        """Every path checked (a few small reads each) before anything is sent: one refusal sends nothing."""
        return await anyio.to_thread.run_sync(check_files, paths, self._settings) if paths else []

    async def prepare(self, chat_id: str, files: list[LocalFile]) -> Outgoing:
        """Inline the images and upload the rest; called after every check and before the POST."""
        out = Outgoing()
        inline_total = 0
        uploads: list[tuple[int, LocalFile]] = []
        sent: dict[int, dict[str, Any]] = {}  # by position in `files`, so the summary follows the caller's order
        for n, f in enumerate(files):
            if f.image_type and inline_total + f.size <= INLINE_IMAGE_MAX:
                inline_total += f.size
                temp = str(len(out.hosted) + 1)
                data = await f.read(0, f.size)
                out.hosted.append({"@microsoft.graph.temporaryId": temp, "contentType": f.image_type,
                                   "contentBytes": base64.b64encode(data).decode("ascii")})
                out.html += (f'<br><img src="../hostedContents/{temp}/$value" '
                             f'alt="{html.escape(f.name, quote=True)}">')
                sent[n] = {"name": f.name, "size": f.size, "sent_as": "inline image"}
            else:
                uploads.append((n, f))
        if uploads:
            recipients = await self._recipients(chat_id)
            for n, f in uploads:
                item = await self._upload(f, recipients)
                att_id = drive.attachment_id(item)
                name = str(item.get("name") or f.name)
                out.attachments.append({"id": att_id, "contentType": "reference", "contentUrl": item.get("webUrl"),
                                        "name": name})
                out.html += f'<attachment id="{html.escape(att_id, quote=True)}"></attachment>'
                sent[n] = {"name": name, "size": f.size, "sent_as": "file", "web_url": item.get("webUrl")}
        out.sent = [sent[n] for n in sorted(sent)]
        return out

    async def _recipients(self, chat_id: str) -> list[dict[str, str]]:
        me = {self._settings.agent_user_id.lower(), self._settings.agent_user_upn.lower()} - {""}
        people = [m for m in await chat_members(self._graph, chat_id)
                  if m.user_id.lower() not in me and m.email.lower() not in me]
        return [{"email": m.email} if m.email else {"objectId": m.user_id} for m in people]

    async def _upload(self, f: LocalFile, recipients: list[dict[str, str]]) -> dict[str, Any]:
        try:
            item = await drive.upload(self._graph, self._settings, f.name, f.size, f.read)
            if not item.get("id") or not item.get("webUrl"):
                raise ToolInputError(f"OneDrive did not return the uploaded {f.name}", hint="try again")
            await drive.invite(self._graph, str(item["id"]), recipients)
        except GraphError as exc:
            if exc.status == 403:
                raise ToolInputError(f"the agent may not upload or share files ({exc.message})",
                                     hint="grant the agent Files.ReadWrite: run `agentseat setup --grant`") from exc
            raise
        log.info("teams_file_uploaded", size=f.size, host=urlsplit(str(item["webUrl"])).hostname,
                 shared_with=len(recipients))
        return item
