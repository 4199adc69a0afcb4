"""Azure Storage as a resource of the sandbox's Entra: the scopes that name it and the tokens for it.

"Authorize with Microsoft Entra ID" (Storage REST reference,
https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory):
a token for Storage names the resource ID `https://storage.azure.com/`; Storage exposes
one delegated scope, `user_impersonation`; what a principal may do is Azure RBAC
(Storage Blob Data Contributor and the like), not roles in the token ("Authorize access
to blobs using Microsoft Entra ID"). A token may also name one account's Blob service,
`https://<account>.blob.core.windows.net` (the Storage SDKs' `audience`,
BlobAudience.CreateBlobServiceAccountAudience: "a token for ... that specific Azure
Storage account and service only").

Storage takes v1.0 tokens, so `tokens.v1_access_token` mints them: `iss`
`https://sts.windows.net/<tenant>/`, `aud` the resource as asked (the bare
`https://storage.azure.com` for `https://storage.azure.com/.default`).
Both hops of the agent's chain get them, as for Event Hubs: the Agent Identity app-only
(client credentials) and its Agent User delegated (`user_fic`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from . import tokens
from .clients import OAuthError

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import App, User

__all__ = ["DELEGATED_SCOPE", "STORAGE_RESOURCE", "is_storage", "storage_app_token", "storage_scope",
           "storage_user_token"]

STORAGE_RESOURCE = "https://storage.azure.com"
DELEGATED_SCOPE = "user_impersonation"
_DEFAULT = ".default"
# Storage account names: 3 to 24 lower-case letters and digits (storage-account-overview, "Storage account name").
_ACCOUNT = re.compile(r"^(https://[a-z0-9]{3,24}\.blob\.core\.windows\.net)/", re.IGNORECASE)


def storage_scope(scope: str) -> tuple[str, str] | None:
    """(audience, permission) when `scope` names Storage, else None.

    `https://storage.azure.com//.default` (the resource ID with its trailing slash, then
    `/.default`) keeps the slash in `aud`, as a v1 token echoes the resource it was asked for.
    """
    low = scope.lower()
    if low.startswith(STORAGE_RESOURCE + "/"):
        rest = scope[len(STORAGE_RESOURCE) + 1 :]
        aud = STORAGE_RESOURCE + ("/" if rest.startswith("/") else "")
        return aud, rest.lstrip("/")
    match = _ACCOUNT.match(scope)
    if match is not None:
        return match.group(1).lower(), scope[match.end() :].lstrip("/")
    return None


def is_storage(resource: str) -> bool:
    """Whether a resource label from `storage_scope` (its audience) is Storage."""
    return storage_scope(resource.rstrip("/") + "/" + _DEFAULT) is not None


def storage_app_token(sb: SandboxState, app: App, audience: str) -> tuple[str, dict[str, Any]]:
    """The Agent Identity's (or any app's) app-only Storage token: its service principal, no roles."""
    return tokens.v1_access_token(sb, aud=audience, app_id=app.app_id, oid=app.sp_object_id or app.app_id)


def storage_user_token(sb: SandboxState, identity: App, user: User, audience: str,
                       perms: list[str]) -> tuple[str, dict[str, Any]]:
    """The Agent User's delegated Storage token (`scp` = `user_impersonation`); `.default` means that scope."""
    if any(p.lower() not in (_DEFAULT, DELEGATED_SCOPE) for p in perms):
        raise OAuthError(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not "
                         f"valid. The scope {' '.join(perms)} is not valid.")
    return tokens.v1_access_token(sb, aud=audience, app_id=identity.app_id, oid=user.id, user_id=user.id,
                                  scp=DELEGATED_SCOPE)
