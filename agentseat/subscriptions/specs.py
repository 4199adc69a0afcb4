"""What the agent subscribes to: resource, change type, lifetime and payload per kind.

Rules from Graph's docs: chat messages for all of a user's chats are
`/users/{id}/chats/getAllMessages` (delegated Chat.Read), rich notifications
need an encryption certificate, and Teams subscriptions over an hour need a
lifecycle URL (subscription-post-subscriptions). Rich mail notifications need
`$select` and can never carry the body (outlook-change-notifications-overview).
Lifetimes: chatMessage 4,320 minutes; mail with resource data 1,440 minutes
(subscription resource, "Subscription lifetime").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config import Settings

#: Mail fields a rich notification may carry (Body/UniqueBody cannot be selected).
MAIL_SELECT = "id,subject,from,receivedDateTime,bodyPreview,conversationId,internetMessageId"


@dataclass(frozen=True)
class SubscriptionSpec:
    kind: str  # "teams" | "mail"
    resource: str
    change_type: str
    minutes: int
    rich: bool = True

    def body(self, *, notification_url: str, lifecycle_url: str, client_state: str,
             certificate_b64: str, certificate_id: str, now: datetime | None = None) -> dict[str, Any]:
        """The POST /subscriptions body."""
        body: dict[str, Any] = {
            "changeType": self.change_type,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": self.resource,
            "expirationDateTime": expiry(self.minutes, now),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        if self.rich:
            body |= {"includeResourceData": True, "encryptionCertificate": certificate_b64,
                     "encryptionCertificateId": certificate_id}
        return body

    def matches(self, resource: str) -> bool:
        return _norm(resource) == _norm(self.resource)


def _norm(resource: str) -> str:
    return resource.strip().lstrip("/").lower().replace("mailfolders/inbox", "mailfolders('inbox')")


def expiry(minutes: int, now: datetime | None = None) -> str:
    when = (now or datetime.now(UTC)) + timedelta(minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired_specs(settings: Settings) -> list[SubscriptionSpec]:
    """The subscriptions a webhook-mode runtime keeps alive."""
    return [
        SubscriptionSpec(
            kind="teams",
            resource=f"/users/{settings.agent_user_id}/chats/getAllMessages",
            change_type="created",
            minutes=settings.chat_subscription_minutes,
        ),
        SubscriptionSpec(
            kind="mail",
            resource=f"/me/mailFolders('inbox')/messages?$select={MAIL_SELECT}",
            change_type="created",
            minutes=settings.mail_subscription_minutes,
        ),
    ]
