"""What the delivery engine POSTs: change notifications, lifecycle notifications and
the `validationTokens` JWTs of rich notifications.

Shapes follow the changeNotification and changeNotificationCollection resources
and the examples of teams-changenotifications-chatmessage and
change-notifications-delivery-webhooks (reference §4, §7, §11.5). Encryption is
agentseat.runtime.crypto's `encrypt_content`, the exact inverse of the runtime's
decryptor. No I/O here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cryptography import x509

from agentseat.runtime.crypto import encrypt_content

from ..clock import iso
from ..graph.resources import chat_message_json, mail_json
from ..graph.teams.resources import channel_message_json, message_path
from .resources import ResourceSpec

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChannelMessage, ChatMessage, MailMessage, Subscription

#: The Microsoft Graph Change Tracking application: the caller (`azp` / `appid`) of
#: every validation token (change-notifications-with-resource-data, "How to validate").
CHANGE_TRACKING_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
#: The documented example token lives 24 h 05 min; the lifetime is not fixed.
VALIDATION_TOKEN_LIFETIME = 24 * 3600


def change_tracking_oid(tenant_id: str) -> str:
    """The Change Tracking service principal's object id in this tenant (stable per tenant)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"graph-change-tracking:{tenant_id}"))


def token_audience(sub: Subscription) -> str:
    """`notificationUrlAppId` is "the app ID that the subscription service can use to
    generate the validation token"; otherwise the app that created the subscription."""
    return sub.notification_url_app_id or sub.app_id


def validation_token(sb: SandboxState, audience: str) -> str:
    """One validation token, in v2 form (default) or v1 form.

    The issuer is Entra's public one, as Graph sends it, not the sandbox URL: a
    runtime must accept `https://login.microsoftonline.com/{tid}/v2.0` and
    `https://sts.windows.net/{tid}/` (reference §6). Select v1 with
    `SandboxOptions(extra={"validation_token_version": "1.0"})`.
    """
    tid = sb.tenant.tenant_id
    now = int(sb.clock.now())
    oid = change_tracking_oid(tid)
    claims: dict[str, Any] = {
        "aud": audience, "iat": now, "nbf": now, "exp": now + VALIDATION_TOKEN_LIFETIME,
        "oid": oid, "sub": oid, "tid": tid, "uti": uuid.uuid4().hex[:22],
    }
    if str(sb.options.extra.get("validation_token_version", "2.0")) == "1.0":
        claims.update(iss=f"https://sts.windows.net/{tid}/", appid=CHANGE_TRACKING_APP_ID, appidacr="2",
                      idp=f"https://sts.windows.net/{tid}/", ver="1.0")
    else:
        claims.update(iss=f"https://login.microsoftonline.com/{tid}/v2.0", azp=CHANGE_TRACKING_APP_ID,
                      azpacr="2", ver="2.0")
    return sb.pki.sign(claims)


def behaviour_audience(sb: SandboxState, audience: str) -> str:
    """The `aud` Graph puts in the token under `sb.behaviour.validation_token_audience`.

    change-notifications-with-resource-data ("How to validate") says only "your app
    ID"; for an Agent Identity's delegated subscription that may be the Agent
    Identity's app id (`agent_identity`, the default) or its Blueprint's (`blueprint`).
    """
    if sb.behaviour.validation_token_audience != "blueprint":
        return audience
    app = sb.tenant.apps.get(audience)
    return app.blueprint_app_id if app is not None and app.blueprint_app_id else audience


def validation_tokens(sb: SandboxState, audiences: Iterable[str]) -> list[str] | None:
    """"A single token for each distinct app and tenant pair" (changeNotificationCollection);
    the sandbox has one tenant, so one token per app.

    None under `validation_token_audience = none`: the collection's `validationTokens` is
    "Only provided for change notifications with resource data. Optional."
    (changeNotificationCollection), so a tenant may send it null even for rich ones
    (change-notifications-with-resource-data, "How to validate", leaves the case open).
    The behaviour is read per POST, so a switch applies to what is still queued.
    """
    if sb.behaviour.validation_token_audience == "none":
        return None
    return [validation_token(sb, aud) for aud in dict.fromkeys(behaviour_audience(sb, a) for a in audiences)]


def _base(sb: SandboxState, sub: Subscription) -> dict[str, Any]:
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": iso(sub.expiration),
        "tenantId": sb.tenant.tenant_id,
        "clientState": sub.client_state,
    }


def _encrypted(sub: Subscription, cert: x509.Certificate, payload: dict[str, Any]) -> dict[str, str]:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return encrypt_content(data, cert, sub.encryption_certificate_id or "")


def chat_notification(sb: SandboxState, sub: Subscription, msg: ChatMessage, change_type: str,
                      cert: x509.Certificate | None) -> dict[str, Any]:
    """A chatMessage change (teams-changenotifications-chatmessage): the resource is
    `chats('{chatId}')/messages('{msgId}')`; rich ones carry the whole message."""
    path = f"chats('{msg.chat_id}')/messages('{msg.id}')"
    item = {
        **_base(sb, sub),
        "changeType": change_type,
        "resource": path,
        "resourceData": {"id": msg.id, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": path},
    }
    # A deletion carries no resource data, only the id in resourceData (teams-changenotifications-
    # chatmessage); created and updated carry the message as it now is.
    if cert is not None and change_type != "deleted":
        item["encryptedContent"] = _encrypted(sub, cert, chat_message_json(sb, msg))
    return item


def channel_notification(sb: SandboxState, sub: Subscription, msg: ChannelMessage, change_type: str,
                         cert: x509.Certificate | None) -> dict[str, Any]:
    """A channel post or reply change: the resource is `teams('{t}')/channels('{c}')/messages('{m}')`
    for a post (teams-changenotifications-chatmessage, "Notifications without resource data") and
    `.../messages('{root}')/replies('{r}')` for a reply (changeNotification resource example); rich
    ones carry the whole message, with the same rules as chat messages."""
    path = message_path(msg)
    item = {
        **_base(sb, sub),
        "changeType": change_type,
        "resource": path,
        "resourceData": {"id": msg.id, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": path},
    }
    if cert is not None and change_type != "deleted":
        body = channel_message_json(sb, msg)
        body.pop("@odata.context", None)  # the decrypted payload is the chatMessage itself
        item["encryptedContent"] = _encrypted(sub, cert, body)
    return item


def mail_notification(sb: SandboxState, sub: Subscription, spec: ResourceSpec, msg: MailMessage, change_type: str,
                      cert: x509.Certificate | None) -> dict[str, Any]:
    """An Outlook message change (change-notifications-delivery-webhooks example); rich ones
    carry only the `$select`ed properties, never Body/UniqueBody (rules enforce the select)."""
    path = f"Users/{msg.owner_id}/Messages/{msg.id}"
    etag = mail_json(sb, msg, select=["id"])["@odata.etag"]
    item = {
        **_base(sb, sub),
        "changeType": change_type,
        "resource": path,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": path, "@odata.etag": etag,
                         "id": msg.id},
    }
    if cert is not None:
        item["encryptedContent"] = _encrypted(sub, cert, mail_json(sb, msg, select=list(spec.select)))
    return item


def lifecycle_notification(sb: SandboxState, sub: Subscription, event: str) -> dict[str, Any]:
    """No resource information is included (change-notifications-lifecycle-events)."""
    return {**_base(sb, sub), "lifecycleEvent": event}
