"""Graph JSON for the sandbox's OneDrive: driveItem, permission, drive, and the pre-authenticated download URL.

Shapes follow the driveItem resource (eTag `"{GUID},N"`, cTag `"c:{GUID},N"`, webUrl, parentReference,
file.mimeType, folder.childCount, createdBy/lastModifiedBy, `@microsoft.graph.downloadUrl`) and the
permission resource (grantedTo, grantedToV2, invitation, roles), as driveitem-invite returns them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...clock import iso
from ..query import decode_token, encode_token
from . import store

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem

#: driveItem: "@microsoft.graph.downloadUrl ... only valid for a short period of time" (an hour here).
DOWNLOAD_URL_SECONDS = 3600
DOWNLOAD_PATH = "/_sandbox/download/"


def _who(sb: SandboxState, user_id: str) -> dict[str, Any]:
    user = sb.tenant.users.get(user_id)
    return {"user": {"email": user.mail if user else None, "id": user_id,
                     "displayName": user.display_name if user else None}}


def download_url(sb: SandboxState, item: DriveItem) -> str:
    """A URL anyone holding it may GET for an hour, without a token, as SharePoint's are."""
    token = encode_token(sb, {"k": "dl", "i": item.id, "v": item.version,
                              "e": int(sb.clock.now() + DOWNLOAD_URL_SECONDS)})
    return f"{sb.url}{DOWNLOAD_PATH}{token}"


def item_for_download(sb: SandboxState, token: str) -> DriveItem | None:
    """The item a download URL names, if the URL is genuine and not expired."""
    data = decode_token(sb, token)
    if data is None or data.get("k") != "dl" or float(data.get("e", 0)) < sb.clock.now():
        return None
    return sb.tenant.drive_items.get(str(data.get("i")))


def item_json(sb: SandboxState, item: DriveItem, *, download: bool = True) -> dict[str, Any]:
    parent = sb.tenant.drive_items.get(item.parent_id) if item.parent_id else None
    body: dict[str, Any] = {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#drives('{item.drive_id}')/items/$entity",
        "createdDateTime": iso(item.created),
        "eTag": f'"{{{item.etag_guid}}},{item.version}"',
        "id": item.id,
        "lastModifiedDateTime": iso(item.modified),
        "name": item.name,
        "webUrl": store.web_url(sb, item),
        "cTag": f'"c:{{{item.etag_guid}}},{item.version}"',
        "size": item.size if not item.is_folder else sum(c.size for c in store.children(sb, item)),
        "createdBy": _who(sb, item.created_by),
        "lastModifiedBy": _who(sb, item.modified_by),
        "parentReference": {"driveType": "business", "driveId": item.drive_id},
        "fileSystemInfo": {"createdDateTime": iso(item.created), "lastModifiedDateTime": iso(item.modified)},
    }
    if parent is not None:
        body["parentReference"] |= {"id": parent.id, "name": parent.name if parent.parent_id else "Documents",
                                    "path": f"/drives/{item.drive_id}/root:{parent.path}"}
    else:
        body["root"] = {}
    if item.is_folder:
        body["folder"] = {"childCount": len(store.children(sb, item))}
    else:
        body["file"] = {"mimeType": item.mime_type}
        if download:
            body = {"@microsoft.graph.downloadUrl": download_url(sb, item), **body}
    return body


def permission_json(sb: SandboxState, perm: dict[str, Any]) -> dict[str, Any]:
    user = sb.tenant.users.get(perm["user_id"])
    name = user.display_name if user else None
    return {
        "@deprecated.GrantedTo": "GrantedTo has been deprecated. Refer to GrantedToV2",
        "grantedTo": {"user": {"displayName": name, "id": perm["user_id"]}},
        "grantedToV2": {"user": {"id": perm["user_id"], "displayName": name, "email": user.mail if user else None},
                        "siteUser": {"id": perm["id"][:4], "displayName": name,
                                     "loginName": f"i:0#.f|membership|{user.upn if user else perm['user_id']}"}},
        "id": perm["id"],
        "invitation": {"email": perm.get("email"), "signInRequired": True},
        "roles": list(perm["roles"]),
    }


def drive_json(sb: SandboxState, user_id: str) -> dict[str, Any]:
    user = sb.tenant.users[user_id]
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#drives/$entity",
        "id": store.drive_id_of(user_id),
        "driveType": "business",
        "name": "OneDrive",
        "webUrl": f"{sb.url}/personal/{store.personal_slug(user)}/Documents",
        "owner": _who(sb, user_id),
    }
