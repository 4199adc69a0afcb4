"""The Agent User's mailbox and Teams presence are not there at once.

Creating an Agent User provisions neither; a licence starts both, and it can take
hours (Entra, "agent users"). Behaviour `mailbox_ready_after_seconds` makes the
sandbox answer as a real tenant does for that long after the Agent User is
created or licensed, whichever is later:

- mail routes: 404 `MailboxNotEnabledForRESTAPI`, "The mailbox is either inactive,
  soft-deleted, or is hosted on-premise." (Exchange troubleshooting KB 4462988,
  "REST API is not yet supported for this mailbox"; the message as Graph words it:
  Microsoft Q&A 1457213, a user without a licence);
- Teams routes: 403 `Forbidden`, "Failed to get license information for the user.
  Ensure user has a valid Office365 license assigned to them." (GET /me/chats in
  RogerSelwyn/O365-HomeAssistant#183; create chat in
  microsoftgraph/msgraph-sdk-powershell#1666);
- subscriptions on either: Graph's `ExtensionError` wrapping of the same answer
  (a mailbox: microsoftgraph/microsoft-graph-docs#6868, "[Status Code: NotFound;
  Reason: REST API is not yet supported for this mailbox.]").

One place decides: the Graph middleware (auth.py) asks `refusal` for every route,
and the subscription rules ask `subscription_refusal`; routes know nothing of it.
Only Agent Users are affected; the demo's people have had their mailboxes for years.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..clock import Clock
    from ..state import SandboxState
    from ..tenant import Tenant

MAILBOX_CODE = "MailboxNotEnabledForRESTAPI"
MAILBOX_MESSAGE = "The mailbox is either inactive, soft-deleted, or is hosted on-premise."
TEAMS_MESSAGE = ("Failed to get license information for the user. Ensure user has a valid Office365 license "
                 "assigned to them.")
_MAILBOX_SUBSCRIPTION = ("Operation: Create; Exception: [Status Code: NotFound; Reason: REST API is not yet "
                         "supported for this mailbox.]")
_TEAMS_SUBSCRIPTION = f"Operation: Create; Exception: [Status Code: Forbidden; Reason: {TEAMS_MESSAGE}]"
#: Route templates (version prefix removed, as `auth.route_name` gives them) by part.
_MAIL_MARKERS = ("/messages", "/mailfolders", "/sendmail")
_TEAMS_PREFIXES = ("/chats", "/me/chats", "/users/{user_id}/chats")


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


class Provisioning:
    """When each Agent User's provisioning started (created or licensed, the later one)."""

    def __init__(self, clock: Clock, tenant: Tenant, *, fresh: bool) -> None:
        self._clock = clock
        # A new tenant's Agent User was created just now; one loaded from disk long ago.
        start = clock.now() if fresh else 0.0
        self._started: dict[str, float] = {u.id: start for u in tenant.users.values() if u.kind == "agentUser"}
        #: Parts a test declared done early (real tenants finish Teams and Exchange at different times).
        self._done: dict[str, set[str]] = {}

    def started(self, user_id: str) -> None:
        """The Agent User was created or licensed: provisioning starts over."""
        self._started[user_id] = self._clock.now()
        self._done.pop(user_id, None)

    def finish(self, user_id: str, part: str) -> None:
        """Let one part ("mailbox" | "teams") be ready before the other, as tests need."""
        self._done.setdefault(user_id, set()).add(part)

    def ready(self, sb: SandboxState, user_id: str, part: str = "mailbox") -> bool:
        user = sb.tenant.users.get(user_id)
        if user is None or user.kind != "agentUser" or part in self._done.get(user_id, ()):
            return True
        return self._clock.now() >= self._started.get(user_id, 0.0) + sb.behaviour.mailbox_ready_after_seconds


def _part(template: str) -> str | None:
    """"mailbox", "teams" or None for a route template such as `GET /me/messages/{message_id}`."""
    path = template.partition(" ")[2].lower()
    if path.startswith(_TEAMS_PREFIXES):
        return "teams"
    if path.startswith(("/me/", "/users/{user_id}/")) and any(m in path for m in _MAIL_MARKERS):
        return "mailbox"
    return None


def refusal(sb: SandboxState, template: str, caller_oid: str, delegated: bool, user_ref: str | None) -> Refusal | None:
    """Graph's answer for a mail or Teams route whose Agent User is not provisioned yet, else None.

    The user is the one the URL names (`/users/{id}/...`), else the signed-in user."""
    part = _part(template)
    if part is None:
        return None
    if user_ref is not None:
        user = sb.tenant.user(user_ref)
        user_id = user.id if user is not None else ""
    else:
        user_id = caller_oid if delegated else ""
    if not user_id or sb.provisioning.ready(sb, user_id, part):
        return None
    if part == "mailbox":
        return Refusal(404, MAILBOX_CODE, MAILBOX_MESSAGE)
    return Refusal(403, "Forbidden", TEAMS_MESSAGE)


def subscription_refusal(sb: SandboxState, user_id: str, teams: bool) -> Refusal | None:
    """A subscription on an Agent User's chats or mailbox that is not provisioned yet."""
    if sb.provisioning.ready(sb, user_id, "teams" if teams else "mailbox"):
        return None
    if teams:
        return Refusal(403, "ExtensionError", _TEAMS_SUBSCRIPTION)
    return Refusal(404, "ExtensionError", _MAILBOX_SUBSCRIPTION)
