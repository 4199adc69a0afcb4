"""Graph JSON for the sandbox's OneDrive: driveItem, permission, drive, and the pre-authenticated download URL.

Shapes follow the driveItem resource (eTag `"{GUID},N"`, cTag `"c:{GUID},N"`, webUrl, parentReference,
file.mimeType, folder.childCount, createdBy/lastModifiedBy, `@microsoft.graph.downloadUrl`) and the
permission resource (grantedTo, grantedToV2, invitation, roles), as driveitem-invite returns them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...clock import iso
from ..query import decode_token, encode_token
from . import store
from .access import site_of

if TYPE_CHECKING:
    from ...state import SandboxState
    from ...tenant import DriveItem, Site

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


def sharepoint_host(sb: SandboxState) -> str:
    """The tenant's SharePoint host name, as in site ids (`contoso.sharepoint.com,{guid},{guid}`)."""
    return f"{sb.tenant.domain.split('.')[0]}.sharepoint.com"


def site_id(sb: SandboxState, site: Site) -> str:
    # site resource: "a composite ID of: site collection hostname, site collection unique ID, site unique ID".
    return f"{sharepoint_host(sb)},{site.guid},{site.web_guid}"


def site_url(sb: SandboxState, site: Site) -> str:
    """`/sites/{name}` on the sandbox host; the root site is the host's root."""
    return f"{sb.url}/sites/{quote(site.name)}" if site.name else sb.url


def parent_reference(sb: SandboxState, item: DriveItem) -> dict[str, Any]:
    site = site_of(sb, item.owner_id)
    ref: dict[str, Any] = {"driveType": "documentLibrary" if site else "business", "driveId": item.drive_id}
    if site is not None:
        ref["siteId"] = site_id(sb, site)
    return ref


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
        "parentReference": parent_reference(sb, item),
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


def _identity(sb: SandboxState, user_id: str) -> dict[str, Any]:
    user = sb.tenant.users.get(user_id)
    return {"user": {"id": user_id, "displayName": user.display_name if user else None,
                     "email": user.mail if user else None}}


def permission_json(sb: SandboxState, perm: dict[str, Any]) -> dict[str, Any]:
    """A permission resource: an invitation (grantedTo/grantedToV2) or a sharing link (link, shareId,
    grantedToIdentitiesV2 for the people a `users` link names)."""
    if perm.get("kind") == "link":
        body: dict[str, Any] = {
            "id": perm["id"], "roles": list(perm["roles"]), "shareId": store.share_id(perm["url"]),
            "hasPassword": False,
            "link": {"type": perm["type"], "scope": perm["scope"], "webUrl": perm["url"], "preventsDownload": False},
            "grantedToIdentitiesV2": [_identity(sb, uid) for uid in perm.get("granted_ids", [])],
        }
        if perm.get("expiration") is not None:
            body["expirationDateTime"] = iso(float(perm["expiration"]))
        return body
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
    """A drive: a user's OneDrive (business) or a site's default library (documentLibrary)."""
    site = site_of(sb, user_id)
    if site is not None:
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#drives/$entity",
                "id": store.drive_id_of(site.guid), "driveType": "documentLibrary", "name": "Documents",
                "description": "", "webUrl": store.drive_base_url(sb, site.guid),
                "createdDateTime": iso(site.created),
                "owner": {"group": {"id": site.guid, "displayName": site.display_name}}}
    user = sb.tenant.users[user_id]
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#drives/$entity",
        "id": store.drive_id_of(user_id),
        "driveType": "business",
        "name": "OneDrive",
        "webUrl": store.drive_base_url(sb, user_id),
        "owner": _who(sb, user_id),
    }
