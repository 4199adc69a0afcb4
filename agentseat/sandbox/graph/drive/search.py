"""Finding files: Microsoft Search over driveItems, drive search, and the deprecated sharedWithMe and recent.

- `POST /search/query` (search-query; "Use the Microsoft Search API to search OneDrive and
  SharePoint content", search-concept-files): `requests[].entityTypes ["driveItem"]`,
  `query.queryString`, paging by `from` and `size` (search-api-overview, "Page search results"); one
  searchRequest per call ("Known limitations");
  the answer is `value[].hitsContainers[].hits[].resource` with `total` and
  `moreResultsAvailable`. Results are trimmed to what the signed-in user may open: their own
  drive, their sites' libraries, and whatever was shared with them ("Users cannot access more
  items in a search than they can otherwise obtain from a corresponding GET"). The deprecation
  notices of sharedWithMe and recent name no successor; this is the documented API left that
  finds files across drives.
- `GET {drive}/root/search(q='...')` (driveitem-search): one drive's items, paged by `$top` and
  `@odata.nextLink`; `GET /me/drive/search(q='...')` also finds items shared with the caller
  ("search more broadly to include items shared with the current user").
- `GET /me/drive/sharedWithMe` (drive-sharedwithme, **deprecated**: "will stop returning data
  after November, 2027"): still answers, each item with its `remoteItem` facet.
- `GET /me/drive/recent` (drive-recent, **deprecated**: "degraded state until November, 2026,
  after which it will stop returning data"): answers 200 with an empty list from December 2026.

The query language is the simple part of KQL the file tools need: free terms (all must match,
KQL's implicit AND; `OR` between alternatives), "quoted phrases", a trailing `*` for a prefix,
`filetype:`, `filename:` and `isDocument:true`, and `*` alone for everything. A term matches a
whole word of the file's name or, for text files (txt, md, csv, json and other text/*), of its
content, case-insensitively.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...responses import odata
from ...state import SANDBOX_KEY
from ..auth import graph_route, principal
from ..query import GraphError, graph_errors, json_body
from . import store
from .access import can_read, shared_with
from .items import BASES, REACH_READ, READ_ROLES, READ_SCOPES, caller, drive_owner, page_of, require_reach
from .resources import item_json, parent_reference

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

#: search-query, driveItem: delegated Files.Read.All (least), Sites.Read.All and their ReadWrite forms.
SEARCH_SCOPES = ("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Sites.ReadWrite.All")
#: search-api-overview, "Page search results": from 0 and "The default is 25 results"; the maximum is the
#: behaviour switchboard's `search_max_size` (the docs say 500 in one place and 1000 in another).
SIZE_DEFAULT = 25
#: The entity types the sandbox's Microsoft Search indexes; others are a 400, as Graph answers
#: combinations it does not support (search-api-overview, "Known limitations").
ENTITY_TYPES = {"driveItem"}
#: drive-recent: "will stop returning data" after November 2026.
RECENT_STOPPED = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
TEXT_EXTENSIONS = {"txt", "md", "csv", "json", "log", "xml", "html", "htm", "yaml", "yml", "tsv"}
#: Only this much of a text file is indexed (the rest of a large log is not searched).
TEXT_INDEX_MAX = 2 * 1024 * 1024
_TOKEN = re.compile(r'(\w+):"([^"]*)"|(\w+)[:=](\S+)|"([^"]*)"|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)


# --- the query language -------------------------------------------------------------------------------------
def _is_text(item: DriveItem) -> bool:
    ext = item.name.rpartition(".")[2].lower()
    return ext in TEXT_EXTENSIONS or item.mime_type.startswith("text/") or item.mime_type == "application/json"


def _text(sb: SandboxState, item: DriveItem) -> str:
    if item.is_folder or not _is_text(item) or not item.blob:
        return ""
    path = store.content_path(sb, item)
    if path is None:
        return ""
    with path.open("rb") as fh:
        return fh.read(TEXT_INDEX_MAX).decode("utf-8", errors="ignore")


def _word_match(term: str, text: str) -> bool:
    term = term.lower()
    if " " in term.strip():  # a phrase: its words in a row
        words = " ".join(w.lower() for w in _WORD.findall(text))
        return f" {' '.join(_WORD.findall(term))} " in f" {words} "
    if term.endswith("*"):
        stem = term.rstrip("*")
        return any(w.lower().startswith(stem) for w in _WORD.findall(text))
    wanted = _WORD.findall(term)
    if not wanted:
        return False
    if len(wanted) > 1:  # "q3-report" is the phrase "q3 report"
        return _word_match(" ".join(wanted), text)
    return wanted[0] in (w.lower() for w in _WORD.findall(text))


def _clause_match(sb: SandboxState, item: DriveItem, clause: tuple[str, str]) -> bool:
    prop, value = clause
    if prop == "filetype":
        return not item.is_folder and item.name.rpartition(".")[2].lower() == value.lower().lstrip(".")
    if prop == "filename":
        return _word_match(value, item.name) or item.name.lower() == value.lower()
    if prop == "isdocument":
        return (not item.is_folder) == (value.lower() == "true")
    if prop == "*":
        return True
    return _word_match(value, item.name) or _word_match(value, _text(sb, item))


def parse(query: str) -> list[list[tuple[str, str]]]:
    """`a b OR "c d" filetype:docx` -> alternatives, each a list of (property, value) clauses to AND."""
    alternatives: list[list[tuple[str, str]]] = [[]]
    for match in _TOKEN.finditer(query):
        prop_q, val_q, prop, val, phrase, word = match.groups()
        if word == "OR":
            alternatives.append([])
        elif word == "AND":
            continue
        elif prop_q or prop:
            alternatives[-1].append(((prop_q or prop).lower(), val_q if prop_q else val))
        elif phrase is not None:
            alternatives[-1].append(("", phrase))
        elif word == "*":
            alternatives[-1].append(("*", ""))
        elif word:
            alternatives[-1].append(("", word))
    return [alt for alt in alternatives if alt]


def matches(sb: SandboxState, item: DriveItem, alternatives: list[list[tuple[str, str]]]) -> bool:
    return any(all(_clause_match(sb, item, c) for c in alt) for alt in alternatives)


def search_terms(alternatives: list[list[tuple[str, str]]]) -> list[str]:
    return [v for alt in alternatives for p, v in alt if p == "" and v]


def reachable(sb: SandboxState, user_id: str | None) -> list[DriveItem]:
    """Every file and folder (not drive roots) this caller may open, newest change first."""
    found = [i for i in sb.tenant.drive_items.values() if i.parent_id is not None and can_read(sb, i, user_id)]
    return sorted(found, key=lambda i: (-i.modified, i.id))


def _summary(sb: SandboxState, item: DriveItem, terms: list[str]) -> str:
    """A snippet around the first term found in the text, terms marked `<c0>` as Search does."""
    text = _text(sb, item)
    for term in terms:
        word = term.rstrip("*").lower()
        at = text.lower().find(word) if word else -1
        if at >= 0:
            start = max(0, at - 60)
            snippet = text[start:at + len(word) + 60]
            marked = re.sub(re.escape(word), lambda m: f"<c0>{m.group(0)}</c0>", html.escape(snippet), flags=re.I)
            return " ".join(marked.split()) + " <ddd/>"
    return ""


# --- POST /search/query ------------------------------------------------------------------------------------
def _hit_resource(sb: SandboxState, item: DriveItem) -> dict[str, Any]:
    body = item_json(sb, item, download=False)
    out = {"@odata.type": "#microsoft.graph.driveItem"}
    for key in ("createdDateTime", "lastModifiedDateTime", "name", "webUrl", "createdBy", "lastModifiedBy",
                "fileSystemInfo", "size", "id", "file", "folder"):
        if key in body:
            out[key] = body[key]
    out["parentReference"] = {**parent_reference(sb, item), "id": item.parent_id}
    return out


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GraphError(400, "BadRequest", f"'{name}' must be a whole number, 0 or more.")
    return value


def _answer(sb: SandboxState, request: dict[str, Any], user_id: str | None) -> dict[str, Any]:
    types = request.get("entityTypes")
    if not isinstance(types, list) or not types:
        raise GraphError(400, "BadRequest", "'entityTypes' is required: e.g. [\"driveItem\"].")
    unsupported = [t for t in types if t not in ENTITY_TYPES]
    if unsupported:
        raise GraphError(400, "BadRequest", f"The sandbox's Microsoft Search indexes driveItem only; "
                         f"not {', '.join(map(str, unsupported))}.")
    query = request.get("query")
    text = query.get("queryString") if isinstance(query, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise GraphError(400, "BadRequest", "'query.queryString' is required and must not be empty.")
    start = _int(request.get("from"), "from", 0)
    size = _int(request.get("size"), "size", SIZE_DEFAULT)
    if size > sb.behaviour.search_max_size:
        raise GraphError(400, "BadRequest", f"'size' must not be more than {sb.behaviour.search_max_size}.")
    alternatives = parse(text)
    found = _sorted([i for i in reachable(sb, user_id) if matches(sb, i, alternatives)],
                    request.get("sortProperties"))
    page = found[start:start + size]
    terms = search_terms(alternatives)
    hits = [{"@odata.type": "#microsoft.graph.searchHit", "hitId": item.id, "rank": start + n + 1,
             "summary": _summary(sb, item, terms), "resource": _hit_resource(sb, item)}
            for n, item in enumerate(page)]
    container = {"@odata.type": "#microsoft.graph.searchHitsContainer", "hits": hits, "total": len(found),
                 "moreResultsAvailable": start + len(page) < len(found)}
    return {"@odata.type": "#microsoft.graph.searchResponse", "searchTerms": terms, "hitsContainers": [container]}


#: search-concept-sort: driveItem properties that are sortable in the search schema (names as the examples
#: write them, in any case); "the default sort order is ascending"; "at most 5 sort properties".
_SORTABLE: dict[str, Callable[[DriveItem], Any]] = {
    "createddatetime": lambda i: i.created, "lastmodifieddatetime": lambda i: i.modified,
    "lastmodifiedtime": lambda i: i.modified, "name": lambda i: i.name.lower(), "filename": lambda i: i.name.lower(),
    "size": lambda i: i.size,
}


def _sorted(items: list[DriveItem], raw: Any) -> list[DriveItem]:
    """Relevance order (here: newest change first) unless `sortProperties` says otherwise."""
    if raw is None:
        return items
    if not isinstance(raw, list) or len(raw) > 5 or not all(isinstance(p, dict) for p in raw):
        raise GraphError(400, "BadRequest", "'sortProperties' must be at most 5 sortProperty objects.")
    for prop in reversed(raw):  # stable sorts, last key first: the first property leads
        key = _SORTABLE.get(str(prop.get("name", "")).lower())
        if key is None:
            raise GraphError(400, "BadRequest", f"The property '{prop.get('name')}' is not sortable.")
        items = sorted(items, key=key, reverse=prop.get("isDescending") is True)
    return items


@graph_route(scopes=SEARCH_SCOPES, roles=("Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All",
                                          "Sites.ReadWrite.All"))
@graph_errors
async def search_query(request: web.Request) -> web.Response:
    sb = request.app[SANDBOX_KEY]
    data = await json_body(request)
    requests = data.get("requests")
    if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) for r in requests):
        raise GraphError(400, "BadRequest", "'requests' must be a non-empty array of searchRequest objects.")
    if len(requests) > 1:
        # search-api-overview, "Known limitations": "the service currently supports only a single
        # searchRequest at a time".
        raise GraphError(400, "BadRequest", "Only one searchRequest is supported per query.")
    who = principal(request)
    if who.kind != "user" and any(not r.get("region") for r in requests):
        # search-concept-searchall: application permissions need the `region` of the content.
        raise GraphError(400, "BadRequest", "'region' is required in searchRequest for application permissions.")
    user_id = who.oid if who.kind == "user" else None
    return web.json_response({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#"
                              "Collection(microsoft.graph.searchResponse)",
                              "value": [_answer(sb, r, user_id) for r in requests]})


# --- drive search, sharedWithMe, recent --------------------------------------------------------------------------
def _q(request: web.Request) -> str:
    """The `q` of `search(q='...')`, quotes doubled inside as OData escapes them."""
    call = request.match_info["call"]
    inner = call[len("search(q="):-1].strip()
    if len(inner) >= 2 and inner[0] == inner[-1] == "'":
        inner = inner[1:-1].replace("''", "'")
    if not inner.strip():
        raise GraphError(400, "invalidRequest", "search(q='...') needs some text to search for.")
    return inner


def _remote(sb: SandboxState, item: DriveItem) -> dict[str, Any]:
    """An item from another drive as its remoteItem facet (drive-sharedwithme, drive-recent)."""
    body = item_json(sb, item, download=False)
    facet = {k: body[k] for k in ("id", "name", "size", "webUrl", "file", "folder", "createdBy", "lastModifiedBy",
                                  "createdDateTime", "lastModifiedDateTime") if k in body}
    facet["parentReference"] = {**parent_reference(sb, item), "id": item.parent_id}
    return {"id": item.id, "name": item.name, "size": body["size"], "webUrl": body["webUrl"],
            "lastModifiedDateTime": body["lastModifiedDateTime"], "remoteItem": facet}


def _listing(sb: SandboxState, request: web.Request, items: list[DriveItem], tag: str,
             foreign: str | None = None, *, search: bool = False) -> web.Response:
    page, next_link = page_of(request, items, tag)
    values = []
    for item in page:
        if foreign is not None and item.drive_id != foreign:
            body = _remote(sb, item)
        else:
            body = item_json(sb, item)
            body.pop("@odata.context", None)
        if search:
            body["searchResult"] = {}  # driveitem-search: each result carries the searchResult facet
        values.append(body)
    return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)", values,
                                   next_link))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def drive_search(request: web.Request) -> web.Response:
    """driveitem-search: `root/search` looks in this drive; `/me/drive/search` also in what is shared."""
    sb = request.app[SANDBOX_KEY]
    owner, who = drive_owner(request), caller(request)
    require_reach(request, owner)
    alternatives = parse(_q(request))
    drive = store.drive_id_of(owner)
    # Items from other drives only with an .All scope (items.require_reach).
    broad = request.path.startswith("/v1.0/me/drive/search") and bool(principal(request).scopes & set(REACH_READ))
    found = [i for i in reachable(sb, who) if (i.drive_id == drive or (broad and who is not None
             and shared_with(sb, i, who))) and matches(sb, i, alternatives)]
    return _listing(sb, request, found, f"search:{drive}:{request.match_info['call']}", drive if broad else None,
                    search=True)


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def shared_with_me(request: web.Request) -> web.Response:
    """drive-sharedwithme (deprecated; still answers until November 2027)."""
    sb = request.app[SANDBOX_KEY]
    who = caller(request)
    if who is None:
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    found = [i for i in reachable(sb, who) if shared_with(sb, i, who)]
    return _listing(sb, request, found, f"shared:{who}", foreign=store.drive_id_of(who))


@graph_route(scopes=READ_SCOPES, roles=READ_ROLES)
@graph_errors
async def recent(request: web.Request) -> web.Response:
    """drive-recent (deprecated): no data after November 2026; before, what the caller last changed."""
    sb = request.app[SANDBOX_KEY]
    who = caller(request)
    if who is None:
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    if sb.clock.now() >= RECENT_STOPPED:
        return web.json_response(odata("https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)", []))
    found = [i for i in reachable(sb, who) if not i.is_folder and who in (i.modified_by, i.created_by)]
    return _listing(sb, request, found, f"recent:{who}", foreign=store.drive_id_of(who))


def routes() -> list[web.RouteDef]:
    out = [web.post("/v1.0/search/query", search_query),
           web.get("/v1.0/me/drive/sharedWithMe", shared_with_me),
           web.get("/v1.0/me/drive/recent", recent),
           web.get("/v1.0/me/drive/{call:search\\(q=.*\\)}", drive_search)]
    for base in BASES:
        out.append(web.get(f"{base}/root/{{call:search\\(q=.*\\)}}", drive_search))
    return out

