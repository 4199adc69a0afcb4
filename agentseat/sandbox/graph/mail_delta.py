"""Mail delta query: `GET /me/mailFolders/{id}/messages/delta` (Graph "delta-query-messages").

A round lists every change in the folder up to a watermark (`tenant.mail_seq`
when the round began), page by page with `@odata.nextLink …?$skiptoken=`;
the last page carries `@odata.deltaLink …?$deltatoken=`, whose next round
reports only later changes, deleted messages as `@removed`. Query options go
into the first request only and ride along in the opaque tokens.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from . import throttle
from .auth import graph_route
from ..state import SANDBOX_KEY
from .mail import READ_ROLES, READ_SCOPES, folder_name, mailbox, mailbox_owner, render
from .query import (
    GraphError,
    bad_request,
    date_literal,
    decode_token,
    encode_token,
    filter_clauses,
    graph_errors,
    link,
    prefer_max_page_size,
    query,
    select,
    top,
)
from ..tenant import MailMessage

log = structlog.get_logger(__name__)

DELTA_PAGE_DEFAULT = 10
CHANGE_TYPES = ("created", "updated", "deleted")


def _initial_state(request: web.Request, owner_id: str, folder: str) -> dict[str, Any]:
    """Validate the first request's options (delta-query-messages, "Query parameters")."""
    bounds: list[tuple[str, float]] = []
    raw_filter = query(request, "$filter")
    if raw_filter:
        for prop, op, literal in filter_clauses(raw_filter):
            # "$filter supports only receivedDateTime ge|gt {value}".
            if prop.lower() != "receiveddatetime" or op not in ("ge", "gt"):
                raise bad_request("Delta supports only '$filter=receivedDateTime ge|gt {value}'.")
            bounds.append((op, date_literal(literal)))
    order = query(request, "$orderby")
    if order is not None and " ".join(order.lower().split()) != "receiveddatetime desc":
        raise bad_request("Delta supports only '$orderby=receivedDateTime desc'.")
    if query(request, "$search") is not None:
        raise bad_request("Delta does not support $search.")
    change_type = request.query.get("changeType")
    if change_type is not None and change_type.lower() not in CHANGE_TYPES:
        raise bad_request(f"changeType must be one of {', '.join(CHANGE_TYPES)}.")
    raw_top = query(request, "$top")
    return {
        "k": "maildelta", "o": owner_id, "fd": folder, "sel": select(request), "f": bounds,
        "ct": change_type.lower() if change_type else None,
        "n": top(request, default=DELTA_PAGE_DEFAULT, maximum=1000) if raw_top is not None else None,
        "b": 0, "tb": 0.0,  # the previous round's watermark and its time (0: initial sync)
    }


def _token_state(request: web.Request, owner_id: str, folder: str) -> dict[str, Any] | None:
    sb = request.app[SANDBOX_KEY]
    skip, delta = query(request, "$skiptoken"), query(request, "$deltatoken")
    if skip is None and delta is None:
        return None
    state = decode_token(sb, skip if skip is not None else delta or "")
    if state is None or state.get("k") != "maildelta" or state.get("o") != owner_id or state.get("fd") != folder:
        raise bad_request("The delta or skip token is invalid for this mailbox folder.")
    if max(int(state.get("b", 0)), int(state.get("w") or 0)) > sb.tenant.mail_seq:
        # Graph answers 410 Gone SyncStateNotFound when it no longer has the sync state; start a full sync.
        raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found.")
    if delta is not None:
        state = {**state, "w": None, "tw": None, "a": None}  # a new round
    return state


def _wanted(msg: MailMessage, state: dict[str, Any]) -> bool:
    if msg.deleted:
        if state["b"] == 0:
            return False  # an initial sync lists what exists
        return state["ct"] in (None, "deleted")
    for op, value in state["f"]:
        if not (msg.received > value if op == "gt" else msg.received >= value):
            return False
    if state["ct"] is None:
        return True
    is_new = state["b"] == 0 or msg.received > state["tb"]
    return state["ct"] == ("created" if is_new else "updated")


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES, limits=throttle.OUTLOOK)
@graph_errors
async def messages_delta(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    owner = mailbox_owner(request)
    folder = folder_name(request)
    state = _token_state(request, owner.id, folder) or _initial_state(request, owner.id, folder)
    if state.get("w") is None:  # first page of a round: fix its watermark
        state = {**state, "w": sb.tenant.mail_seq, "tw": sb.clock.now(), "a": state["b"]}
    preferred = prefer_max_page_size(request)
    page_size = preferred or state["n"] or DELTA_PAGE_DEFAULT
    pending = sorted((m for m in mailbox(sb, owner.id)
                      if m.folder == folder and state["a"] < m.change_seq <= state["w"] and _wanted(m, state)),
                     key=lambda m: m.change_seq)
    page = pending[:page_size]
    values: list[dict[str, Any]] = []
    for msg in page:
        if msg.deleted:
            values.append({"@odata.type": "#microsoft.graph.message", "id": msg.id, "@removed": {"reason": "deleted"}})
        else:
            values.append({"@odata.type": "#microsoft.graph.message", **render(request, msg, state["sel"])})
    body: dict[str, Any] = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)"}
    if len(pending) > page_size:
        token = encode_token(sb, {**state, "a": page[-1].change_seq})
        body["@odata.nextLink"] = link(sb, request, {"$skiptoken": token})
    else:
        next_round = {**state, "b": state["w"], "tb": state["tw"], "w": None, "tw": None, "a": None}
        body["@odata.deltaLink"] = link(sb, request, {"$deltatoken": encode_token(sb, next_round)})
    body["value"] = values
    headers = {"Preference-Applied": f"odata.maxpagesize={preferred}"} if preferred else None
    log.debug("mail_delta_page", items=len(values), last=len(pending) <= page_size)
    return web.json_response(body, headers=headers)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1.0/me/mailFolders/{folder_id}/messages/delta", messages_delta),
        web.get("/v1.0/users/{user_id}/mailFolders/{folder_id}/messages/delta", messages_delta),
    ]
