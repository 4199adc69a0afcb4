"""The sandbox's drives (each user's OneDrive, each site's library): finding, creating and replacing items.

A drive's owner key is a user's object id or a site's collection guid (sites.py); who may read
and write is access.py's rule, re-exported here. No HTTP here: routes (items, upload, sessions,
sharing, search) and the control API call these functions, so a
file made through `/_sandbox/` is the same item Graph serves. Rules come from the driveItem
resource (eTag, cTag, webUrl, parentReference), "Upload small files" (driveitem-put-content:
`@microsoft.graph.conflictBehavior` fail | replace | rename) and "Send a sharing invitation"
(driveitem-invite). A file's bytes are a blob (sandbox/blobs.py), never in tenant.json.
"""

from __future__ import annotations

import base64
import mimetypes
import re
import secrets
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import structlog

from ...blobs import blob_path, put_blob, read_blob
from ...tenant import DriveItem
from ..query import GraphError
from .access import access_denied, can_read, can_write, readable, site_of

__all__ = ["access_denied", "can_read", "can_write", "readable"]  # re-exported: callers ask the store

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import User

log = structlog.get_logger(__name__)

#: The folder Teams keeps the files people send in chats in (and the control API does too).
TEAMS_CHAT_FOLDER = "Microsoft Teams Chat Files"
ROLES = ("read", "write")
#: OneDrive for Business refuses these characters in names (driveItem naming rules).
_BAD_NAME = re.compile(r'["*:<>?/\\|#%]')
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def not_found(what: str = "The resource could not be found.") -> GraphError:
    return GraphError(404, "itemNotFound", what)


# --- identities and addresses -----------------------------------------------------------------------------
def drive_id_of(user_id: str) -> str:
    """OneDrive for Business drive ids look like `b!` and base64url; stable per user here."""
    return "b!" + base64.urlsafe_b64encode(uuid.UUID(user_id).bytes * 2).decode().rstrip("=")


def _new_item_id() -> str:
    # OneDrive for Business item ids: 34 characters, "01" and base32 (driveItem examples).
    return "01" + "".join(secrets.choice(_B32) for _ in range(32))


def personal_slug(user: User) -> str:
    """The `/personal/{slug}/` part of a OneDrive URL: the UPN with `@` and `.` as `_`."""
    return re.sub(r"[^a-z0-9]", "_", user.upn.lower())


#: A team site's default document library, in its URLs (SharePoint's "Shared Documents").
SITE_LIBRARY = "Shared Documents"


def drive_base_url(sb: SandboxState, owner_id: str) -> str:
    """The drive's webUrl: `/personal/{slug}/Documents` for a OneDrive, `/sites/{name}/Shared Documents`."""
    site = site_of(sb, owner_id)
    if site is not None:
        base = f"{sb.url}/sites/{quote(site.name)}" if site.name else sb.url  # the root site: the host's root
        return f"{base}/{quote(SITE_LIBRARY)}"
    return f"{sb.url}/personal/{personal_slug(sb.tenant.users[owner_id])}/Documents"


def web_url(sb: SandboxState, item: DriveItem) -> str:
    """Where the item opens, on the sandbox host as SharePoint's `{tenant}-my.sharepoint.com` would be."""
    return f"{drive_base_url(sb, item.owner_id)}{quote(item.path)}"


def share_id(url: str) -> str:
    """shares-get, "Encoding sharing URLs": `u!` + unpadded base64url of the URL."""
    return "u!" + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def decode_share_id(value: str) -> str | None:
    if not value.startswith("u!"):
        return None
    raw = value[2:]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def by_url(sb: SandboxState, url: str) -> DriveItem | None:
    """The item a webUrl names, whether its path is percent-encoded or not."""
    parts = urlsplit(url)
    wanted = unquote(parts.path).rstrip("/")
    for item in sb.tenant.drive_items.values():
        if unquote(urlsplit(web_url(sb, item)).path).rstrip("/") == wanted:
            return item
    return None


# --- reading ------------------------------------------------------------------------------------------------
def root(sb: SandboxState, user_id: str) -> DriveItem:
    """A user's drive root, made on first use (every licensed user has a OneDrive)."""
    drive = drive_id_of(user_id)
    for item in sb.tenant.drive_items.values():
        if item.drive_id == drive and item.parent_id is None:
            return item
    now = sb.clock.now()
    item = DriveItem(id=_new_item_id(), drive_id=drive, owner_id=user_id, name="root", parent_id=None, path="",
                     is_folder=True, created=now, modified=now, created_by=user_id, modified_by=user_id,
                     etag_guid=str(uuid.uuid4()).upper())
    sb.tenant.drive_items[item.id] = item
    sb.mark_dirty()
    return item


def children(sb: SandboxState, folder: DriveItem) -> list[DriveItem]:
    return [i for i in sb.tenant.drive_items.values() if i.parent_id == folder.id]


def by_path(sb: SandboxState, user_id: str, path: str) -> DriveItem | None:
    clean = normal_path(path)
    if clean == "":
        return root(sb, user_id)
    drive = drive_id_of(user_id)
    for item in sb.tenant.drive_items.values():
        if item.drive_id == drive and item.path.lower() == clean.lower():
            return item
    return None


def by_id(sb: SandboxState, item_id: str, drive_id: str | None = None) -> DriveItem:
    item = sb.tenant.drive_items.get(item_id)
    if item is None or (drive_id is not None and item.drive_id != drive_id):
        raise not_found()
    return item


def content(sb: SandboxState, item: DriveItem) -> bytes:
    if item.is_folder:
        raise GraphError(400, "invalidRequest", "A folder has no content stream.")
    return read_blob(sb.state_dir, item.blob) if item.blob else b""


def content_path(sb: SandboxState, item: DriveItem) -> Path | None:
    """Where a file's bytes are on disk, to stream them; None for an empty file."""
    return blob_path(sb.state_dir, item.blob) if item.blob else None


# --- writing ------------------------------------------------------------------------------------------------
def normal_path(path: str) -> str:
    """`/a/b.txt` for any of `a/b.txt`, `/a//b.txt/`; each name checked as OneDrive checks it."""
    names = [n for n in path.replace("\\", "/").split("/") if n]
    for name in names:
        check_name(name)
    return "".join(f"/{n}" for n in names)


def check_name(name: str) -> str:
    if not name.strip() or _BAD_NAME.search(name) or name != name.strip() or name.endswith("."):
        raise GraphError(400, "invalidRequest", f"The name '{name}' contains characters OneDrive does not allow "
                         "(\" * : < > ? / \\ | # %), or leading or trailing spaces.")
    return name


def ensure_folder(sb: SandboxState, user_id: str, path: str) -> DriveItem:
    """The folder at `path`, made with its parents as needed (uploads create missing folders)."""
    folder = root(sb, user_id)
    for name in [n for n in normal_path(path).split("/") if n]:
        found = next((c for c in children(sb, folder) if c.name.lower() == name.lower()), None)
        if found is not None and not found.is_folder:
            raise GraphError(409, "nameAlreadyExists", f"A file named '{name}' is in the way of this folder path.")
        if found is None:
            now = sb.clock.now()
            found = DriveItem(id=_new_item_id(), drive_id=folder.drive_id, owner_id=user_id, name=name,
                              parent_id=folder.id, path=f"{folder.path}/{name}", is_folder=True, created=now,
                              modified=now, created_by=user_id, modified_by=user_id,
                              etag_guid=str(uuid.uuid4()).upper())
            sb.tenant.drive_items[found.id] = found
        folder = found
    return folder


def new_folder(sb: SandboxState, user_id: str, parent: DriveItem, name: str, conflict: str, *,
               actor: str) -> DriveItem:
    """A folder under `parent`; an existing name is 409 (fail), renamed (rename) or reused (replace)."""
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}'.")
    existing = next((c for c in children(sb, parent) if c.name.lower() == name.lower()), None)
    if existing is not None and conflict == "fail":
        raise GraphError(409, "nameAlreadyExists", f"The specified item name '{name}' already exists.")
    if existing is not None and conflict == "replace" and existing.is_folder:
        return existing
    if existing is not None:
        name = _free_name(sb, parent, name)
    now = sb.clock.now()
    folder = DriveItem(id=_new_item_id(), drive_id=parent.drive_id, owner_id=user_id, name=name, parent_id=parent.id,
                       path=f"{parent.path}/{name}", is_folder=True, created=now, modified=now, created_by=actor,
                       modified_by=actor, etag_guid=str(uuid.uuid4()).upper())
    sb.tenant.drive_items[folder.id] = folder
    sb.mark_dirty()
    return folder


def _free_name(sb: SandboxState, folder: DriveItem, name: str) -> str:
    """`report 1.pdf`, `report 2.pdf`, ... as OneDrive renames on conflict."""
    taken = {c.name.lower() for c in children(sb, folder)}
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 1
    candidate = name
    while candidate.lower() in taken:
        candidate = f"{stem} {n}" + (f".{ext}" if ext else "")
        n += 1
    return candidate


def write_file(sb: SandboxState, user_id: str, folder_path: str, name: str, data: bytes, *,
               conflict: str = "replace", actor: str | None = None) -> tuple[DriveItem, bool]:
    """Create or replace a file; returns it and whether it is new. `conflict` as conflictBehavior."""
    check_conflict(sb, user_id, folder_path, name, conflict)
    return write_blob(sb, user_id, folder_path, name, put_blob(sb.state_dir, data), len(data), conflict=conflict,
                      actor=actor)


def check_conflict(sb: SandboxState, user_id: str, folder_path: str, name: str, conflict: str) -> None:
    """409 nameAlreadyExists before any bytes are stored, when `fail` meets an existing name."""
    folder = by_path(sb, user_id, folder_path)
    if conflict == "fail" and folder is not None and any(c.name.lower() == name.lower()
                                                          for c in children(sb, folder)):
        raise GraphError(409, "nameAlreadyExists", f"The specified item name '{name}' already exists.")


def write_blob(sb: SandboxState, user_id: str, folder_path: str, name: str, blob: str, size: int, *,
               conflict: str = "replace", actor: str | None = None) -> tuple[DriveItem, bool]:
    """`write_file` for bytes already in the blob store (uploads stream there first)."""
    check_name(name)
    if conflict not in ("replace", "fail", "rename"):
        raise GraphError(400, "invalidRequest", f"Invalid conflict behavior '{conflict}': use fail, replace or "
                         "rename.")
    folder = ensure_folder(sb, user_id, folder_path)
    actor = actor or user_id
    now = sb.clock.now()
    existing = next((c for c in children(sb, folder) if c.name.lower() == name.lower()), None)
    if existing is not None and conflict == "fail":
        raise GraphError(409, "nameAlreadyExists", f"The specified item name '{name}' already exists.")
    if existing is not None and existing.is_folder and conflict == "replace":
        raise GraphError(409, "nameAlreadyExists", f"A folder named '{name}' already exists.")
    if existing is not None and conflict == "replace":
        existing.blob, existing.size = blob, size
        existing.version += 1
        existing.modified, existing.modified_by = now, actor
        sb.mark_dirty()
        log.info("drive_file_replaced", item=existing.id, size=size)
        return existing, False
    if existing is not None:
        name = _free_name(sb, folder, name)
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    item = DriveItem(id=_new_item_id(), drive_id=folder.drive_id, owner_id=user_id, name=name, parent_id=folder.id,
                     path=f"{folder.path}/{name}", is_folder=False, created=now, modified=now, created_by=actor,
                     modified_by=actor, etag_guid=str(uuid.uuid4()).upper(), size=size, mime_type=mime,
                     blob=blob)
    sb.tenant.drive_items[item.id] = item
    sb.mark_dirty()
    log.info("drive_file_created", item=item.id, size=size)
    return item, True


def grant(sb: SandboxState, item: DriveItem, user: User, roles: list[str], email: str | None) -> dict[str, Any]:
    """Give `user` the roles on `item` (merged into their existing permission, as SharePoint does)."""
    for perm in item.permissions:
        if perm.get("user_id") == user.id:
            perm["roles"] = sorted(set(perm["roles"]) | set(roles))
            sb.mark_dirty()
            return perm
    perm: dict[str, Any] = {"id": secrets.token_hex(16), "user_id": user.id, "roles": sorted(set(roles)),
                               "email": email or user.mail}
    item.permissions.append(perm)
    sb.mark_dirty()
    log.info("drive_item_shared", item=item.id, roles=",".join(roles))
    return perm
