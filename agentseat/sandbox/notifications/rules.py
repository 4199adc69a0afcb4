"""The rules a subscription must satisfy, as Graph enforces them on create and update.

Owns field checks (URLs, changeType, clientState, certificates), lifetimes,
who may subscribe to what, duplicates and quotas, expiry pruning and the
subscription's JSON. Every check raises `RuleError` with Graph's status, code
and message; graph_subscriptions.py turns it into a response. No HTTP here.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from yarl import URL

from ..clock import iso, parse_iso
from ..eventhubs.bridge import BadEventHubUrl, is_eventhub_url
from ..eventhubs.bridge import parse as parse_eventhub_url
from ..graph import provisioning
from .resources import (
    CHANNEL,
    CHAT,
    RICH_MAIL_FORBIDDEN_OPTIONS,
    RICH_MAIL_FORBIDDEN_SELECT,
    USER_CHATS,
    ResourceError,
    ResourceSpec,
    parse_resource,
)

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..graph.auth import Principal
    from ..tenant import Subscription

log = structlog.get_logger(__name__)

RuleError = ResourceError  # one error type for everything a request can violate

CHANGE_TYPES = ("created", "updated", "deleted")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
#: "Any value under 45 minutes after the time of the request is automatically set
#: to 45 minutes after the request time" (subscription resource).
MIN_LIFETIME = 45 * 60
#: lifecycleNotificationUrl is "Required for Teams resources if the expirationDateTime
#: value is more than 1 hour from now" (subscription resource).
TEAMS_LIFECYCLE_REQUIRED_AFTER = 3600
#: The subscription page says clientState is at most 128 characters, the
#: changeNotification page says 255 (reference §2.1, AMBIGUOUS): the stricter one.
CLIENT_STATE_MAX = 128
CERTIFICATE_ID_MAX = 128  # change-notifications-with-resource-data
RSA_BITS = (2048, 4096)  # "RSA ... 2,048–4,096 bits" (change-notifications-with-resource-data)
WEB_PUSH_FIELDS = ("vapidPublicKey", "webPushEncryptionP256dhPublicKey", "webPushEncryptionSecret")
CHAT_SCOPES = ("Chat.Read", "Chat.ReadWrite")
#: `/teams/{id}/channels/{id}/messages`: delegated ChannelMessage.Read.All (subscription-post-subscriptions,
#: teams-changenotifications-chatmessage).
CHANNEL_SCOPES = ("ChannelMessage.Read.All",)
# "Microsoft Graph subscriptions don't support write access permissions when only read
# access permissions are needed" and .Shared scopes do not support subscribing.
MAIL_SCOPES = ("Mail.Read", "Mail.ReadBasic")
# Quotas (change-notifications-overview): chatMessage "Per app and chat combination:
# 1", "Per user (... all chats the user is part of): 10", "Per organization: 10,000";
# Outlook "1,000 active subscriptions per mailbox for all applications". The chatMessage row's
# "Per app and channel or chat combination: 1 subscription" holds for channels too, and channel
# subscriptions count toward the organization's 10,000 Teams subscriptions (change-notifications-
# api-overview: the per-organization limit is shared by every Teams resource).
QUOTA_PER_APP_CHAT = 1
QUOTA_PER_APP_CHANNEL = 1
QUOTA_PER_USER_ALL_CHATS = 10
QUOTA_TEAMS_PER_ORG = 10_000
QUOTA_PER_MAILBOX = 1000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def bad(message: str, code: str = "InvalidRequest", status: int = 400) -> RuleError:
    return RuleError(status, code, message)


def change_types(value: Any) -> tuple[str, ...]:
    """`created,updated` -> ("created", "updated"); unknown or empty values are refused."""
    if not isinstance(value, str) or not value.strip():
        raise bad("Property 'changeType' is required.")
    items = tuple(dict.fromkeys(t.strip().lower() for t in value.split(",")))
    unknown = [t for t in items if t not in CHANGE_TYPES]
    if unknown:
        raise bad(f"'{unknown[0]}' is not a valid changeType; use created, updated or deleted.")
    return items


def check_url(sb: SandboxState, url: Any, name: str) -> str:
    """notificationUrl and lifecycleNotificationUrl must be HTTPS (subscription resource)."""
    if not isinstance(url, str) or not url.strip():
        raise bad(f"Property '{name}' is required.")
    url = url.strip()
    if is_eventhub_url(url):
        try:
            parse_eventhub_url(sb, url)  # change-notifications-delivery-event-hubs: the RBAC form
        except BadEventHubUrl as exc:
            raise bad(f"Invalid {name}: {exc}", "ValidationError") from None
        return url
    if url.lower().startswith("eventgrid:"):
        raise bad(f"Event Grid delivery is not emulated by the sandbox; use an HTTPS or EventHub: {name}.")
    try:
        parsed = URL(url)
    except ValueError:
        raise bad(f"The {name} '{url}' is not a valid URL.") from None
    if parsed.scheme == "https" and parsed.host:
        return url
    # Not Graph: plain http to a loopback host stands in for the tunnel's TLS in
    # tests and the demo, and only when the sandbox option allows it.
    if parsed.scheme == "http" and sb.options.allow_http_loopback and parsed.host in LOOPBACK_HOSTS:
        return url
    raise bad(f"The {name} must be an HTTPS URL.", "ValidationError")


def check_client_state(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > CLIENT_STATE_MAX:
        raise bad(f"clientState must be a string of at most {CLIENT_STATE_MAX} characters.")
    return value


def parse_certificate(value: Any) -> x509.Certificate:
    """A base64 DER X.509 certificate with an RSA key of 2,048 to 4,096 bits; the issuer
    is not checked, so self-signed is fine (change-notifications-with-resource-data)."""
    if not isinstance(value, str) or not value.strip():
        raise bad("A valid encryptionCertificate is required when includeResourceData is true.")
    try:
        der = base64.b64decode("".join(value.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError):
        raise bad("encryptionCertificate must be a base64-encoded X.509 certificate (DER).") from None
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey) or not RSA_BITS[0] <= key.key_size <= RSA_BITS[1]:
        raise bad("encryptionCertificate must hold an RSA public key of 2048 to 4096 bits.")
    return cert


def authorize_resource(sb: SandboxState, spec: ResourceSpec, who: Principal) -> None:
    """The resource's own permission decides, not a 'Subscription' scope (subscription-post-subscriptions)."""
    wanted = CHANNEL_SCOPES if spec.kind == CHANNEL else CHAT_SCOPES if spec.is_teams else MAIL_SCOPES
    if not who.scopes.intersection(wanted):
        raise bad("Operation: Create; Exception: [Status Code: Forbidden; Reason: The caller lacks the permission "
                  f"this resource needs: one of {', '.join(wanted)}.]", "ExtensionError", 403)
    if spec.kind == CHAT:
        chat = sb.tenant.chats.get(spec.chat_id)
        if chat is None:
            raise bad(f"Chat '{spec.chat_id}' was not found.", "NotFound", 404)
        if who.oid not in chat.member_ids:
            raise bad("The signed-in user is not a member of this chat.", "Forbidden", 403)
    elif spec.kind == CHANNEL:
        team = next((t for t in sb.tenant.teams.values() if t.id.lower() == spec.team_id.lower()), None)
        if team is None or team.channel(spec.channel_id) is None:
            raise bad(f"Channel '{spec.channel_id}' of team '{spec.team_id}' was not found.", "NotFound", 404)
        if who.oid not in team.member_ids:
            raise bad("The signed-in user is not a member of this team.", "Forbidden", 403)
    elif spec.user_id != who.oid:
        # Delegated: "chats a particular user is part of" is the signed-in user, and
        # "Delegated permission supports subscribing to items in folders in only the
        # signed-in user's mailbox" (subscription-post-subscriptions).
        raise bad("Delegated subscriptions are limited to the signed-in user's own chats and mailbox.",
                  "Forbidden", 403)
    owner = spec.user_id or (who.oid if who.kind == "user" else "")
    refused = provisioning.subscription_refusal(sb, owner, spec.is_teams) if owner else None
    if refused is not None:  # the Agent User's mailbox or Teams presence is not provisioned yet
        raise bad(refused.message, refused.code, refused.status)


def check_rich(spec: ResourceSpec, include: Any, body: dict[str, Any]) -> x509.Certificate | None:
    """includeResourceData rules; returns the parsed certificate when rich."""
    if include is None or include is False:
        return None
    if include is not True:
        raise bad("includeResourceData must be a boolean.")
    # "encryption is required and the subscription creation fails if an
    # encryptionCertificate isn't specified" (subscription-post-subscriptions).
    cert = parse_certificate(body.get("encryptionCertificate"))
    cert_id = body.get("encryptionCertificateId")
    if not isinstance(cert_id, str) or not cert_id.strip() or len(cert_id) > CERTIFICATE_ID_MAX:
        raise bad(f"encryptionCertificateId is required with includeResourceData (at most {CERTIFICATE_ID_MAX} "
                  "characters).")
    if spec.is_teams and spec.select:
        # "The rich notification consists of all the properties of the changed instance."
        raise bad("$select is not supported on chat message subscriptions with resource data.")
    if spec.is_outlook:
        if not spec.select:
            raise bad("Rich notifications on Outlook messages need a $select query option in the resource.")
        if any(s.lower() in RICH_MAIL_FORBIDDEN_SELECT for s in spec.select):
            raise bad("Body and UniqueBody can't be selected in a subscription with resource data.")
        forbidden = [o for o in RICH_MAIL_FORBIDDEN_OPTIONS if o in spec.options]
        if forbidden:
            raise bad(f"Query option '{forbidden[0]}' is not supported in a subscription with resource data.")
    return cert


def max_minutes(sb: SandboxState, spec: ResourceSpec, rich: bool) -> int:
    """Subscription lifetime table (subscription resource); configurable, since older pages disagree."""
    if spec.is_teams:
        return sb.behaviour.chat_subscription_max_minutes
    return sb.options.mail_rich_max_minutes if rich else sb.options.mail_max_minutes


def resolve_expiration(sb: SandboxState, spec: ResourceSpec, rich: bool, value: Any, lifecycle_url: str | None) -> float:
    if not isinstance(value, str) or not value.strip():
        raise bad("Property 'expirationDateTime' is required.")
    try:
        requested = parse_iso(value)
    except ValueError:
        raise bad(f"expirationDateTime '{value}' is not a valid DateTimeOffset.") from None
    now = sb.clock.now()
    expiration = max(requested, now + MIN_LIFETIME)
    limit = max_minutes(sb, spec, rich)
    if expiration - now > limit * 60:
        # Error text observed from Graph (reference §2.2).
        raise bad(f"Subscription expiration can only be {limit} minutes in the future.", "ExtensionError")
    if spec.is_teams and not lifecycle_url and expiration - now > TEAMS_LIFECYCLE_REQUIRED_AFTER:
        raise bad("lifecycleNotificationUrl is a required property for subscription creation on this resource "
                  "when the expirationDateTime value is set to greater than 1 hour.")
    return expiration


def spec_of(sb: SandboxState, sub: Subscription) -> ResourceSpec:
    return parse_resource(sb, sub.resource, sub.creator_id)


def check_conflicts(sb: SandboxState, spec: ResourceSpec, types: tuple[str, ...], app_id: str, creator_id: str) -> None:
    """409 for a duplicate, 403 for a quota (change-notifications-overview; subscription-post-subscriptions)."""
    same_chat = same_channel = same_user = teams = mailbox = 0
    for other in live_subscriptions(sb):
        try:
            other_spec = spec_of(sb, other)
        except ResourceError:
            continue
        if (other.app_id == app_id and other.creator_id == creator_id and other_spec.key() == spec.key()
                and set(change_types(other.change_type)) == set(types)):
            # Graph's message names the subscription that already exists.
            raise bad(f"Subscription Id {other.id} already exists for the requested combination",
                      "ExtensionError", 409)
        teams += other_spec.is_teams
        if spec.kind == CHAT and other_spec.kind == CHAT and other_spec.chat_id == spec.chat_id:
            same_chat += other.app_id == app_id
        if (spec.kind == CHANNEL and other_spec.kind == CHANNEL and other.app_id == app_id
                and (other_spec.team_id.lower(), other_spec.channel_id) == (spec.team_id.lower(), spec.channel_id)):
            same_channel += 1
        if spec.kind == USER_CHATS and other_spec.kind == USER_CHATS and other_spec.user_id == spec.user_id:
            same_user += 1
        if spec.is_outlook and other_spec.is_outlook and other_spec.user_id == spec.user_id:
            mailbox += 1
    if spec.kind == CHAT and same_chat >= QUOTA_PER_APP_CHAT:
        raise _quota(f"{QUOTA_PER_APP_CHAT} subscription per app and chat")
    if spec.kind == CHANNEL and same_channel >= QUOTA_PER_APP_CHANNEL:
        raise _quota(f"{QUOTA_PER_APP_CHANNEL} subscription per app and channel")
    if spec.kind == USER_CHATS and same_user >= QUOTA_PER_USER_ALL_CHATS:
        raise _quota(f"{QUOTA_PER_USER_ALL_CHATS} subscriptions per user for messages in all chats")
    if spec.is_teams and teams >= QUOTA_TEAMS_PER_ORG:
        raise _quota(f"{QUOTA_TEAMS_PER_ORG} Teams subscriptions per organization")
    if spec.is_outlook and mailbox >= QUOTA_PER_MAILBOX:
        raise _quota(f"{QUOTA_PER_MAILBOX} subscriptions per mailbox")


def _quota(limit: str) -> RuleError:
    return bad(f"Subscription quota exceeded: the limit is {limit}.", "ExtensionError", 403)


def prune_expired(sb: SandboxState) -> None:
    """Drop subscriptions past their expiration: Graph removes them silently."""
    now = sb.clock.now()
    for sub in [s for s in sb.tenant.subscriptions.values() if s.expiration <= now]:
        del sb.tenant.subscriptions[sub.id]
        sb.delivery.forget(sub.id)
        sb.mark_dirty()
        log.info("subscription_expired", subscription=sub.id)


def live_subscriptions(sb: SandboxState) -> list[Subscription]:
    prune_expired(sb)
    return list(sb.tenant.subscriptions.values())


def find(sb: SandboxState, sub_id: str, who: Principal | None = None) -> Subscription | None:
    """A live subscription; with `who`, only one this app created for this user (subscription-list)."""
    prune_expired(sb)
    sub = sb.tenant.subscriptions.get(sub_id)
    if sub is None or (who is not None and (sub.app_id != who.app_id or sub.creator_id != who.oid)):
        return None
    return sub


def subscription_json(sub: Subscription) -> dict[str, Any]:
    """The subscription resource as Graph returns it (subscription-post-subscriptions, Response)."""
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.app_id,
        "changeType": sub.change_type,
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": iso(sub.expiration),
        "creatorId": sub.creator_id,
        "includeResourceData": sub.include_resource_data,
        "latestSupportedTlsVersion": sub.latest_supported_tls_version,
        # The rich example echoes only the id (reference §2.1, AMBIGUOUS): never the certificate.
        "encryptionCertificate": None,
        "encryptionCertificateId": sub.encryption_certificate_id,
        "notificationUrlAppId": sub.notification_url_app_id,
        "notificationContentType": "application/json",
    }
