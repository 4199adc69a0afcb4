"""Inline images in the sandbox's chat messages: `hostedContents` in, `$value` out.

Rules from "Send chatMessage in a channel or a chat" (chatmessage-post, "Send inline images along
with the message"): each `hostedContents` entry has `@microsoft.graph.temporaryId`,
`contentBytes` (base64) and `contentType`; the html body (or a card's content) refers to it as
`../hostedContents/{temporaryId}/$value`, and the stored message names it by its new id,
`{graph}/chats/{chat}/messages/{message}/hostedContents/{id}/$value`. "List hostedContents"
(chatmessage-list-hostedcontents) returns ids with contentBytes and contentType null; "Get
chatMessageHostedContent" returns one, and `/$value` its bytes. Posting over 4 MB of hosted
content fails (microsoft-graph-docs#19264: "maximum possible size of hosted content is 4MB").
Graph's wording for the other refusals is not documented; ours names what is wrong.

The lookup (`find_hosted`) and the three responses take a message and its URL, so channel
messages reuse them with routes of their own.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..blobs import put_blob, read_blob
from ..responses import odata
from ..state import SANDBOX_KEY
from .auth import graph_route
from .chats import chat_for, viewer_of
from .query import GraphError, bad_request, graph_errors
from .throttle import CHAT_GET

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChatMessage

TEMP_ID = "@microsoft.graph.temporaryId"
#: What Teams shows inline; other types are files, sent as reference attachments.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
MAX_BYTES = 4 * 1024 * 1024
#: chatmessagehostedcontent-get, permissions for chat.
READ_SCOPES = ("Chat.Read", "Chat.ReadWrite")
READ_ROLES = ("ChatMessage.Read.Chat", "Chat.Read.All", "Chat.ReadWrite.All")
_REF = re.compile(r"\.\./hostedContents/([^/\"'\s]+)/\$value")


@dataclass(frozen=True)
class PendingContent:
    """A checked hostedContents entry of a message being sent, before it has an id."""

    temporary_id: str
    content_type: str
    data: bytes


def _referenced(content: str, attachments: list[dict[str, Any]]) -> set[str]:
    found = set(_REF.findall(content))
    for attachment in attachments:
        if isinstance(attachment.get("content"), str):
            found |= set(_REF.findall(attachment["content"]))
    return found


def check_hosted_contents(raw: Any, content: str, attachments: list[dict[str, Any]]) -> list[PendingContent]:
    """The hostedContents of a message being sent, checked as Graph checks them; GraphError otherwise."""
    refs = _referenced(content, attachments)
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise bad_request("'hostedContents' must be a collection of chatMessageHostedContent.")
    out: list[PendingContent] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise bad_request(f"hostedContents[{i}] must be a chatMessageHostedContent object.")
        temp = entry.get(TEMP_ID)
        if not isinstance(temp, str) or not temp:
            raise bad_request(f"hostedContents[{i}] needs a '{TEMP_ID}'.")
        if any(p.temporary_id == temp for p in out):
            raise bad_request(f"The temporaryId '{temp}' is used more than once.")
        kind = str(entry.get("contentType") or "").lower()
        if kind not in IMAGE_TYPES:
            raise bad_request(f"hostedContents '{temp}' has contentType '{entry.get('contentType')}'; inline "
                              f"content must be one of {', '.join(IMAGE_TYPES)}.")
        raw_bytes = entry.get("contentBytes")
        try:
            data = base64.b64decode(raw_bytes, validate=True) if isinstance(raw_bytes, str) else b""
        except (binascii.Error, ValueError):
            raise bad_request(f"hostedContents '{temp}': contentBytes is not valid base64.") from None
        if not data:
            raise bad_request(f"hostedContents '{temp}': contentBytes is required (the base64 of the image).")
        if len(data) > MAX_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", f"hostedContents '{temp}' is over the 4 MB limit for "
                             "hosted content.")
        if temp not in refs:
            raise bad_request(f"hostedContents '{temp}' is not referenced; put <img src=\"../hostedContents/{temp}/"
                              "$value\"> in the body.")
        out.append(PendingContent(temp, kind, data))
    if missing := refs - {p.temporary_id for p in out}:
        raise bad_request(f"The body references hostedContents '{sorted(missing)[0]}', which is not in "
                          "'hostedContents'.")
    return out


def _new_id(sb: SandboxState) -> str:
    # Graph's ids are base64 of "id=...,type=1,url=..." (chatmessagehostedcontent-get example); opaque here too.
    token = secrets.token_hex(16)
    raw = f"id=x_0-sbx-{token},type=1,url={sb.url}/v1/objects/0-sbx-{token}/views/imgo"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def store_hosted_contents(sb: SandboxState, msg: ChatMessage, pending: list[PendingContent], message_url: str) -> None:
    """Give each pending content an id and a blob, and point the body's (and cards') srcs at `$value`."""
    urls: dict[str, str] = {}
    for item in pending:
        hcid = _new_id(sb)
        msg.hosted_contents.append({"id": hcid, "contentType": item.content_type, "size": len(item.data),
                                    "blob": put_blob(sb.state_dir, item.data)})
        urls[item.temporary_id] = f"{message_url}/hostedContents/{hcid}/$value"

    def rewrite(text: str) -> str:
        return _REF.sub(lambda m: urls.get(m.group(1), m.group(0)), text)

    msg.content = rewrite(msg.content)
    for attachment in msg.attachments:
        if isinstance(attachment.get("content"), str):
            attachment["content"] = rewrite(attachment["content"])


def chat_message_url(sb: SandboxState, chat_id: str, message_id: str) -> str:
    return f"{sb.graph_url}/chats/{chat_id}/messages/{message_id}"


# --- reading (shared with channel messages) --------------------------------------------------------------------
def find_hosted(msg: ChatMessage, hosted_id: str) -> dict[str, Any]:
    for item in msg.hosted_contents:
        if item["id"] == hosted_id:
            return item
    raise GraphError(404, "NotFound", f"Hosted content '{hosted_id}' was not found in this message.")


def list_response(msg: ChatMessage, context: str) -> web.Response:
    """chatmessage-list-hostedcontents: ids only; contentBytes and contentType are null in a list."""
    values = [{"id": h["id"], "contentType": None, "contentBytes": None} for h in msg.hosted_contents]
    return web.json_response(odata(context, values))


def get_response(msg: ChatMessage, hosted_id: str, context: str) -> web.Response:
    item = find_hosted(msg, hosted_id)
    return web.json_response({"@odata.context": context, "id": item["id"], "contentType": item["contentType"],
                              "contentBytes": None})


def value_response(sb: SandboxState, msg: ChatMessage, hosted_id: str) -> web.Response:
    item = find_hosted(msg, hosted_id)
    return web.Response(body=read_blob(sb.state_dir, item["blob"]), content_type=item["contentType"])


# --- chat routes --------------------------------------------------------------------------------------------------
def _chat_message(request: web.Request) -> ChatMessage:
    sb = request.app[SANDBOX_KEY]
    chat = chat_for(sb, request.match_info["chat_id"], viewer_of(request), outsider=403)
    wanted = request.match_info["message_id"]
    for message in sb.tenant.messages.get(chat.id, []):
        if message.id == wanted:
            return message
    raise GraphError(404, "NotFound", f"Message {wanted} was not found in this chat.")


def _context(request: web.Request, suffix: str) -> str:
    chat, message = request.match_info["chat_id"], request.match_info["message_id"]
    return f"https://graph.microsoft.com/v1.0/$metadata#chats('{chat}')/messages('{message}')/hostedContents{suffix}"


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=CHAT_GET)
@graph_errors
async def list_chat_hosted(request: web.Request) -> web.Response:
    return list_response(_chat_message(request), _context(request, ""))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=CHAT_GET)
@graph_errors
async def get_chat_hosted(request: web.Request) -> web.Response:
    return get_response(_chat_message(request), request.match_info["hosted_id"], _context(request, "/$entity"))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=CHAT_GET)
@graph_errors
async def get_chat_hosted_value(request: web.Request) -> web.Response:
    return value_response(request.app[SANDBOX_KEY], _chat_message(request), request.match_info["hosted_id"])


def routes() -> list[web.RouteDef]:
    """chatmessagehostedcontent-get documents `/chats/...` and `/users/{id}/chats/...`; `/me/` is its alias."""
    out: list[web.RouteDef] = []
    for base in ("/v1.0/chats", "/v1.0/me/chats", "/v1.0/users/{user_id}/chats"):
        item = f"{base}/{{chat_id}}/messages/{{message_id}}/hostedContents"
        out += [web.get(item, list_chat_hosted),
                web.get(f"{item}/{{hosted_id}}/$value", get_chat_hosted_value),
                web.get(f"{item}/{{hosted_id}}", get_chat_hosted)]
    return out
