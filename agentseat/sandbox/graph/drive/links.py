"""Sharing links: made by createLink (and the control API), found by their URL, and what they let through.

Rules from "Create a sharing link for a DriveItem" (driveitem-createlink):
- `type` view (read) | edit (write); `embed` is "only available for files in OneDrive personal";
- `scope` anonymous | organization | users, the organization's default when absent; "anonymous
  link support may be disabled by an administrator" (the sandbox tenant's is, by default:
  behaviour `anonymous_sharing_links`);
- "If a sharing link of the specified type already exists for the app, the existing sharing link
  is returned" (200, else 201);
- links "do not expire unless" `expirationDateTime` is given, and "can be removed by an owner".
A link is stored as a permission on the item (`kind: link`). Through "Access shared items"
(shares-get), an anonymous or organization link lets any caller of the tenant reach the item; a
`users` link only the people it names or who could already open the item.
`Prefer: redeemSharingLink` records the caller on the link, which then grants them its roles anywhere.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import structlog

from . import store
from .access import can_read, site_of

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

log = structlog.get_logger(__name__)

TYPES = {"view": ["read"], "edit": ["write"]}
SCOPES = ("anonymous", "organization", "users")
#: When createLink names no scope: "the default link type for the organization" (people in the tenant).
DEFAULT_SCOPE = "organization"
#: SharePoint sharing URLs carry the kind of file after the host: /:w:/ Word, /:x:/ Excel, ...
_LETTERS = {"docx": "w", "doc": "w", "xlsx": "x", "xls": "x", "csv": "x", "pptx": "p", "ppt": "p", "pdf": "b"}


def _letter(item: DriveItem) -> str:
    if item.is_folder:
        return "f"
    return _LETTERS.get(item.name.rpartition(".")[2].lower(), "u")


def link_url(sb: SandboxState, item: DriveItem, token: str) -> str:
    """`/:w:/g/personal/{slug}/{token}` for a OneDrive file, `/:w:/s/{site}/{token}` for a site's."""
    site = site_of(sb, item.owner_id)
    if site is not None:
        where = f"s/{site.name}" if site.name else "r"
    else:
        where = f"g/personal/{store.personal_slug(sb.tenant.users[item.owner_id])}"
    return f"{sb.url}/:{_letter(item)}:/{where}/{token}"


def is_link(perm: dict[str, Any]) -> bool:
    return perm.get("kind") == "link"


def create(sb: SandboxState, item: DriveItem, link_type: str, scope: str, *, app_id: str, actor: str | None,
           granted_ids: list[str] | None = None, expiration: float | None = None) -> tuple[dict[str, Any], bool]:
    """The item's link of this type and scope for this app, made if new; (permission, created)."""
    for perm in item.permissions:
        if is_link(perm) and (perm["type"], perm["scope"], perm.get("app_id")) == (link_type, scope, app_id):
            perm["granted_ids"] = sorted(set(perm.get("granted_ids", [])) | set(granted_ids or []))
            sb.mark_dirty()
            return perm, False
    token = "E" + secrets.token_urlsafe(30)[:40]
    perm: dict[str, Any] = {"id": secrets.token_hex(16), "kind": "link", "type": link_type, "scope": scope,
                            "roles": list(TYPES[link_type]), "url": link_url(sb, item, token), "app_id": app_id,
                            "created_by": actor, "granted_ids": sorted(set(granted_ids or [])),
                            "expiration": expiration}
    item.permissions.append(perm)
    sb.mark_dirty()
    log.info("drive_link_created", item=item.id, scope=scope, link_type=link_type)
    return perm, True


def _path(url: str) -> str:
    return unquote(urlsplit(url).path).rstrip("/")


def by_url(sb: SandboxState, url: str) -> tuple[DriveItem, dict[str, Any]] | None:
    """The item and link permission a sharing URL names (its `?e=` and other query parts ignored)."""
    wanted = _path(url)
    if "/:" not in wanted:
        return None
    for item in sb.tenant.drive_items.values():
        for perm in item.permissions:
            if is_link(perm) and _path(perm["url"]) == wanted:
                return item, perm
    return None


def live(sb: SandboxState, perm: dict[str, Any]) -> bool:
    expiration = perm.get("expiration")
    return expiration is None or float(expiration) > sb.clock.now()


def lets_through(sb: SandboxState, item: DriveItem, perm: dict[str, Any], user_id: str | None) -> bool:
    """Whether this caller may open the item through this link."""
    if not live(sb, perm):
        return False
    if perm["scope"] in ("anonymous", "organization") or user_id is None:
        return True
    return user_id in perm.get("granted_ids", []) or can_read(sb, item, user_id)


def redeem(sb: SandboxState, perm: dict[str, Any], user_id: str) -> None:
    """shares-get `Prefer: redeemSharingLink`: "grants the caller durable access to the item"."""
    if user_id not in perm.get("granted_ids", []):
        perm["granted_ids"] = sorted({*perm.get("granted_ids", []), user_id})
        sb.mark_dirty()
        log.info("drive_link_redeemed", link=perm["id"])
