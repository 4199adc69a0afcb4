"""Sharing a file with one person: a driveItem invitation (driveitem-invite).

`roles` read or write, `requireSignIn: true` (only that person, signed in, opens it) and
`sendInvitation: true` (they get the sharing notice). Who may be given a file is decided by the
tool's gate (tools/files_share.py), not here.
"""

from __future__ import annotations

from typing import Any, Literal

from ..graph.client import GraphClient
from .refs import ItemRef

Role = Literal["read", "write"]


def recipient_of(person: dict[str, Any]) -> dict[str, str]:
    """A driveRecipient for a Graph user: by mail (or sign-in name), else by object id."""
    address = person.get("mail") or person.get("userPrincipalName")
    return {"email": str(address)} if address else {"objectId": str(person.get("id") or "")}


async def invite(graph: GraphClient, ref: ItemRef, person: dict[str, Any], role: Role) -> list[dict[str, Any]]:
    """Give `person` `role` on the file; the permissions Graph created."""
    body = await graph.post(f"{ref.path}/invite", {"recipients": [recipient_of(person)], "roles": [role],
                                                   "requireSignIn": True, "sendInvitation": True})
    return list((body or {}).get("value", []))
