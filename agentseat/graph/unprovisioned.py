"""Graph's answers for an Agent User whose mailbox or Teams presence is not provisioned yet.

Creating an Agent User provisions neither; licensing starts both and it can take
hours (Entra, "agent users"). Until then Graph refuses in recognisable words. Those
refusals are neither replication (waiting minutes will not help) nor final (they
clear by themselves): the subscriptions' readiness probe waits for them, and the
Graph client does not spend its replication window on them.
"""

from __future__ import annotations

from typing import Literal

Part = Literal["mailbox", "teams"]

# A mailbox that is not provisioned (yet) answers 404 MailboxNotEnabledForRESTAPI, "The
# mailbox is either inactive, soft-deleted, or is hosted on-premise." (Exchange
# troubleshooting KB 4462988, "REST API is not yet supported for this mailbox"; Microsoft
# Q&A 1457213: the user has no Exchange licence yet). A subscription on it is refused as
# ExtensionError "[Status Code: NotFound; Reason: REST API is not yet supported for this
# mailbox.]" (microsoftgraph/microsoft-graph-docs#6868).
_MAILBOX_CODES = ("mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi")
_MAILBOX_WORDS = ("not yet supported for this mailbox", "mailbox is either inactive")
# Teams answers a user without a (provisioned) licence with 403 Forbidden, "Failed to get
# license information for the user. Ensure user has a valid Office365 license assigned to
# them." (seen on GET /me/chats: RogerSelwyn/O365-HomeAssistant#183; on create chat:
# microsoftgraph/msgraph-sdk-powershell#1666).
_TEAMS_WORDS = ("failed to get license information",)


def unprovisioned_part(status: int, code: str | None, message: str | None) -> Part | None:
    """`mailbox` or `teams` when this refusal says that part of the Agent User is not provisioned yet."""
    text = (message or "").lower()
    if status == 404 and ((code or "").lower() in _MAILBOX_CODES or any(w in text for w in _MAILBOX_WORDS)):
        return "mailbox"
    if status == 403 and any(w in text for w in _TEAMS_WORDS):
        return "teams"
    return None
