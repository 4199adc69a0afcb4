"""Writing files to the agent's OneDrive or a SharePoint site's library: paths, sites, uploads.

Graph v1.0 pages:
- driveitem-put-content: a small file in one PUT to `{drive}/root:/{path}:/content`, with
  `@microsoft.graph.conflictBehavior` fail | replace | rename (409 nameAlreadyExists on fail);
- driveitem-createuploadsession: anything larger than AGENTSEAT_SIMPLE_UPLOAD_MAX_MB in a
  resumable session (graph/upload_session.py), the conflict behaviour in `item`; a session
  that expires mid-way is started again once;
- site-getbypath (`/sites/{hostname}:/{server-relative-path}`), site-get (`/sites/{site-id}`),
  site-search (`/sites?search=`), drive-get (`/sites/{site-id}/drive`: the default library);
- OneDrive naming rules: no `" * : < > ? / \\ |`, no leading or trailing spaces, no name ending in
  a dot, and not `.` or `..`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import structlog

from .. import progress
from ..config import Settings
from ..errors import GraphError, NotFoundError, ToolInputError
from ..graph import upload_session
from ..graph.client import GraphClient
from ..graph.hosts import check_content_url
from .deny import DenyList, refusal

log = structlog.get_logger(__name__)

Target = Literal["onedrive", "sharepoint"]
Conflict = Literal["fail", "replace", "rename"]
Reader = Callable[[int, int], Awaitable[bytes]]
_MB = 1024 * 1024
_BAD = re.compile(r'["*:<>?\\|\x00-\x1f\x7f]')
MAX_PATH = 400


def check_path(raw: str) -> str:
    """`raw` as a drive path (`folder/name.ext`, no leading slash), or a ToolInputError."""
    parts = [p for p in raw.replace("\\", "/").split("/") if p != ""]
    if not parts:
        raise ToolInputError("path is empty", hint="give a path such as notes/summary.md")
    for part in parts:
        if part in (".", "..") or _BAD.search(part) or part != part.strip() or part.endswith("."):
            raise ToolInputError(f"path: {part!r} is not a valid OneDrive/SharePoint name",
                                 hint='names cannot hold " * : < > ? \\ | or end in a dot or a space')
    path = "/".join(parts)
    if len(path) > MAX_PATH:
        raise ToolInputError(f"path is longer than {MAX_PATH} characters", hint="use a shorter path")
    return path


async def _site(graph: GraphClient, raw: str) -> dict[str, Any]:
    value = raw.strip()
    try:
        if value.lower().startswith("https://"):
            parts = urlsplit(value)
            site_path = parts.path.strip("/")
            host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)  # a port: the sandbox only
            return dict(await graph.get(f"/sites/{host}:/{quote(site_path, safe='/')}" if site_path
                                        else f"/sites/{host}") or {})
        if "," in value or re.fullmatch(r"[0-9a-fA-F-]{36}", value):
            return dict(await graph.get(f"/sites/{quote(value, safe=',')}") or {})
        found = (await graph.get("/sites", search=value) or {}).get("value", [])
    except NotFoundError as exc:
        raise ToolInputError(f"no SharePoint site {raw!r}", hint="give the site's URL or id") from exc
    except GraphError as exc:
        if exc.status == 403:
            raise ToolInputError(f"the agent cannot open the site {raw!r}",
                                 hint="ask a site owner to add the agent as a member") from exc
        raise
    exact = [s for s in found if str(s.get("name", "")).lower() == value.lower()
             or str(s.get("displayName", "")).lower() == value.lower()]
    if len(exact) != 1:
        raise ToolInputError(f"no single SharePoint site named {raw!r}", hint="give the site's URL or id")
    return dict(exact[0])


async def drive_base(graph: GraphClient, deny: DenyList, target: Target, site: str | None) -> str:
    """The Graph path of the drive to write in: the agent's OneDrive, or the site's default library."""
    if target == "onedrive":
        if site:
            raise ToolInputError("site is for target=\"sharepoint\"", hint="drop site, or set target=\"sharepoint\"")
        return "/me/drive"
    if not site:
        raise ToolInputError("target=\"sharepoint\" needs site: the site's URL or id",
                             hint="for example site=\"https://contoso.sharepoint.com/sites/Team\"")
    if deny.url_denied(site) or deny.site_denied(site):
        raise refusal("write")
    found = await _site(graph, site)
    deny.check_site(found, "write")
    site_id = str(found.get("id") or "")
    if not site_id:
        raise ToolInputError(f"Graph returned no id for the site {site!r}", hint="give the site's URL or id")
    return f"/sites/{quote(site_id, safe=',')}/drive"


def _conflict_error(path: str, exc: GraphError) -> Exception:
    if exc.status == 409:
        return ToolInputError(f"a file already exists at {path!r}; nothing was written",
                              hint='call again with conflict="replace" to overwrite it or "rename" to keep both')
    if exc.status == 403:
        return ToolInputError(f"the agent may not write to {path!r} ({exc.message})",
                              hint="write to the agent's own OneDrive, or ask for write access to the site")
    if isinstance(exc, NotFoundError):
        return ToolInputError(f"the folder for {path!r} was not found", hint="check the path and the site")
    return exc


async def upload(graph: GraphClient, settings: Settings, base: str, path: str, size: int, read: Reader,
                 conflict: Conflict) -> dict[str, Any]:
    """Put `size` bytes at `path` in the drive at `base`; the driveItem. Small: one PUT; else a session."""
    target = f"{base}/root:/{quote(path, safe='/')}:"
    behaviour = {"@microsoft.graph.conflictBehavior": conflict}
    try:
        if size <= settings.simple_upload_max_mb * _MB:
            response = await graph.request("PUT", f"{target}/content", params=behaviour, data=await read(0, size),
                                           headers={"Content-Type": "application/octet-stream"})
            return dict(response.body or {})
        try:
            return await _session_upload(graph, settings, target, size, read, behaviour)
        except upload_session.SessionGone:  # expired mid-way: its bytes are gone, so start once more
            log.info("upload_session_restarted")
            return await _session_upload(graph, settings, target, size, read, behaviour)
    except GraphError as exc:
        raise _conflict_error(path, exc) from exc


async def _session_upload(graph: GraphClient, settings: Settings, target: str, size: int, read: Reader,
                          behaviour: dict[str, str]) -> dict[str, Any]:
    session = await graph.post(f"{target}/createUploadSession", {"item": behaviour})
    url = check_content_url(str((session or {}).get("uploadUrl") or ""), settings.graph_host, "an upload session")
    log.info("upload_session_started", bytes=size)
    return await upload_session.send(settings, url, size, read, progress=_report_progress)


async def _report_progress(sent: int, total: int) -> None:
    """Upload progress on stderr (structlog), and to the MCP host when the call asked for it: per range."""
    log.info("upload_progress", sent=sent, total=total, percent=round(100 * sent / max(total, 1), 1))
    await progress.report(sent, total, f"uploaded {sent / 1048576:.1f} of {total / 1048576:.1f} MB")
