"""Who may read and write a driveItem: the drive's owner, a site's members, and the item's permissions.

One rule for every route (items, uploads, sharing, shares, search) and the control API:
- a OneDrive belongs to its user; a SharePoint library (graph/drive/sites.py) to its site,
  whose members read and write it ("site membership decides access");
- "DriveItem resources inherit sharing permissions from their ancestors" (driveitem-createlink),
  so a permission on a folder reaches everything below it;
- a permission is an invitation (driveitem-invite: one user) or a sharing link
  (driveitem-createlink): a link grants its roles to the people it was sent to (scope `users`)
  and to those who redeemed it (shares-get, `Prefer: redeemSharingLink`). Reaching an item
  *through* a link is decided in links.py, not here.
An app-only caller (None) has tenant-wide Files/Sites roles and passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..query import GraphError

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem, Site


def access_denied() -> GraphError:
    # OneDrive's error code for an item the caller may not see (errors: "accessDenied").
    return GraphError(403, "accessDenied", "Access denied. You do not have permission to perform this action or "
                      "access this resource.")


def site_of(sb: SandboxState, owner_id: str) -> Site | None:
    """The site whose library this owner key names, or None for a user's OneDrive."""
    return sb.tenant.sites.get(owner_id)


def lineage(sb: SandboxState, item: DriveItem) -> list[DriveItem]:
    """The item and the folders above it, nearest first."""
    chain = [item]
    while chain[-1].parent_id is not None and chain[-1].parent_id in sb.tenant.drive_items:
        chain.append(sb.tenant.drive_items[chain[-1].parent_id])
    return chain


def grantees(perm: dict[str, Any]) -> list[str]:
    """The users a permission gives its roles to."""
    if perm.get("user_id"):
        return [perm["user_id"]]
    return list(perm.get("granted_ids", []))


def owns(sb: SandboxState, item: DriveItem, user_id: str) -> bool:
    """The drive is theirs: their own OneDrive, or a library of a site they are a member of."""
    if item.owner_id == user_id:
        return True
    site = site_of(sb, item.owner_id)
    return site is not None and (site.everyone or user_id in site.member_ids)


def roles(sb: SandboxState, item: DriveItem, user_id: str | None) -> set[str]:
    if user_id is None or owns(sb, item, user_id):
        return {"read", "write"}
    out: set[str] = set()
    now = sb.clock.now()
    for node in lineage(sb, item):
        for perm in node.permissions:
            expired = perm.get("expiration") is not None and float(perm["expiration"]) <= now
            if user_id in grantees(perm) and not expired:
                out.update(perm["roles"])
    if "write" in out:
        out.add("read")
    return out


def can_read(sb: SandboxState, item: DriveItem, user_id: str | None) -> bool:
    return "read" in roles(sb, item, user_id)


def can_write(sb: SandboxState, item: DriveItem, user_id: str | None) -> bool:
    return "write" in roles(sb, item, user_id)


def readable(sb: SandboxState, item: DriveItem, user_id: str | None) -> DriveItem:
    if not can_read(sb, item, user_id):
        raise access_denied()
    return item


def shared_with(sb: SandboxState, item: DriveItem, user_id: str) -> bool:
    """Shared with them by someone else: a permission on the item itself names them (what
    drive-sharedwithme lists; items below a shared folder are reached through the folder)."""
    return not owns(sb, item, user_id) and any(user_id in grantees(p) for p in item.permissions)
