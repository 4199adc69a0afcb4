"""Comments in Excel workbooks: the only comment API Graph v1.0 documents for files.

v1.0 has "List workbookComments" (workbook-list-comments: `GET /me/drive/items/{id}/workbook/comments`),
"Get workbookComment" and "Create workbookCommentReply" (workbookcomment-post-replies: 201), with
delegated Files.ReadWrite only ("Application: Not supported"). It has no way to start a new
comment, and no comment API for Word, PowerPoint, PDF or other driveItems (comments there are
beta or absent), so the sandbox serves exactly this.

A workbook's comments are read from the file, as Excel keeps them: threaded comments in
`xl/threadedComments/*.xml` (`<threadedComment id=... ref=... [parentId=...]><text>`), a
`parentId` marking a reply. Replies posted through Graph are kept beside the file
(`DriveItem.comment_replies`), not written into it.
"""

from __future__ import annotations

import secrets
import uuid
import zipfile
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route
from ..query import GraphError, graph_errors, json_body
from . import store
from .items import BASES, ITEM, PATH, addressed_item, caller

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

COMMENT_SCOPES = ("Files.ReadWrite", "Files.ReadWrite.All", "Sites.ReadWrite.All")
_THREADED_PREFIX = "xl/threadedComments/"
_TAG = "{http://schemas.microsoft.com/office/spreadsheetml/2018/threadedcomments}"


def _workbook(request: web.Request, *, write: bool = False) -> DriveItem:
    item = addressed_item(request, write=write)
    if item.is_folder or not item.name.lower().endswith((".xlsx", ".xlsm")):
        raise GraphError(400, "notSupported", "The workbook API works on Excel workbooks (.xlsx, .xlsm) only.")
    return item


def _from_file(sb: SandboxState, item: DriveItem) -> list[dict[str, Any]]:
    """The threaded comments in the workbook file, each {"id", "content", "parent"} in file order."""
    path = store.content_path(sb, item)
    if path is None:
        return []
    out = []
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(n for n in archive.namelist() if n.startswith(_THREADED_PREFIX) and n.endswith(".xml")):
                root = ElementTree.fromstring(archive.read(name))
                for node in root.iter(f"{_TAG}threadedComment"):
                    text = node.find(f"{_TAG}text")
                    out.append({"id": node.get("id", ""), "content": (text.text or "") if text is not None else "",
                                "parent": node.get("parentId")})
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as exc:
        raise GraphError(400, "invalidRequest", "The file is not a workbook Excel can open.") from exc
    return out


def _comment(sb: SandboxState, item: DriveItem, comment_id: str) -> dict[str, Any]:
    for entry in _from_file(sb, item):
        if entry["parent"] is None and entry["id"].strip("{}").lower() == comment_id.strip("{}").lower():
            return entry
    raise GraphError(404, "itemNotFound", f"The comment '{comment_id}' was not found in this workbook.")


def _replies(sb: SandboxState, item: DriveItem, comment: dict[str, Any]) -> list[dict[str, Any]]:
    in_file = [{"id": e["id"], "content": e["content"], "contentType": "plain"}
               for e in _from_file(sb, item) if e["parent"] == comment["id"]]
    posted = [{"id": r["id"], "content": r["content"], "contentType": r["contentType"]}
              for r in item.comment_replies if r["comment_id"] == comment["id"]]
    return in_file + posted


def _comment_json(comment: dict[str, Any]) -> dict[str, Any]:
    return {"id": comment["id"], "content": comment["content"], "contentType": "plain"}


@graph_route(scopes=COMMENT_SCOPES, delegated_only=True)
@graph_errors
async def list_comments(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    item = _workbook(request)
    top = [_comment_json(c) for c in _from_file(sb, item) if c["parent"] is None]
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(workbookComment)", top))


@graph_route(scopes=COMMENT_SCOPES, delegated_only=True)
@graph_errors
async def get_comment(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    return web.json_response(_comment_json(_comment(sb, _workbook(request), request.match_info["comment_id"])))


@graph_route(scopes=COMMENT_SCOPES, delegated_only=True)
@graph_errors
async def list_replies(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    item = _workbook(request)
    comment = _comment(sb, item, request.match_info["comment_id"])
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(workbookCommentReply)",
                                   _replies(sb, item, comment)))


@graph_route(scopes=COMMENT_SCOPES, delegated_only=True)
@graph_errors
async def post_reply(request: web.Request) -> web.Response:
    """workbookcomment-post-replies: 201 with the new workbookCommentReply."""
    sb = request.app[SANDBOX_KEY]
    item = _workbook(request, write=True)
    if not store.can_write(sb, item, caller(request)):
        raise store.access_denied()
    comment = _comment(sb, item, request.match_info["comment_id"])
    data = await json_body(request)
    content = data.get("content")
    if not isinstance(content, str) or not content.strip():
        raise GraphError(400, "invalidRequest", "'content' is required: the reply's text.")
    content_type = data.get("contentType", "plain")
    if content_type not in ("plain", "mention"):
        raise GraphError(400, "invalidRequest", "'contentType' must be 'plain' or 'mention'.")
    reply = {"id": "{" + str(uuid.UUID(bytes=secrets.token_bytes(16))).upper() + "}", "comment_id": comment["id"],
             "content": content, "contentType": content_type, "author": caller(request)}
    item.comment_replies.append(reply)
    sb.mark_dirty()
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#workbookCommentReply",
                              "id": reply["id"], "content": content, "contentType": content_type}, status=201)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for base in BASES:
        for item in (f"{base}/items/{ITEM}", f"{base}/root:/{PATH}:"):
            out += [web.get(f"{item}/workbook/comments", list_comments),
                    web.get(f"{item}/workbook/comments/{{comment_id:[^/]+}}/replies", list_replies),
                    web.post(f"{item}/workbook/comments/{{comment_id:[^/]+}}/replies", post_reply),
                    web.get(f"{item}/workbook/comments/{{comment_id:[^/]+}}", get_comment)]
    return out
