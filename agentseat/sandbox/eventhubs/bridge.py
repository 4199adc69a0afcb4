"""Graph's change notifications into the emulated hub ("Receive change notifications
through Azure Event Hubs", https://learn.microsoft.com/graph/change-notifications-delivery-event-hubs).

- The notificationUrl (and lifecycleNotificationUrl) form with Azure RBAC is
  `EventHub:https://<namespace>.servicebus.windows.net/eventhubname/<hub>?tenantId=<domain>`;
  `eventhubname` is a literal segment. The Key Vault form (`EventHub:https://<vault>.vault.azure.net/
  secrets/...`) is not emulated and is refused with a hint.
- There is no HTTP validation handshake. Graph sends a validation message to the hub
  instead, which the receiver ignores: a collection whose one notification has
  `subscriptionId` "NA" and a `changeType` "Validation: Testing client application
  reachability for subscription Request-Id: ...". Creation fails if the hub can't be reached.
- Each delivery is the same changeNotificationCollection a webhook POST carries,
  without `validationTokens` ("Event Hubs deliveries carry no validationTokens"), as
  one event's body. Graph sends to the hub, not a partition, with no partition key,
  so the service spreads events over the partitions (round-robin here).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from yarl import URL

from .namespace import SUFFIX

if TYPE_CHECKING:
    from ..state import SandboxState

log = structlog.get_logger(__name__)

PREFIX = "eventhub:"


class BadEventHubUrl(ValueError):
    pass


@dataclass(frozen=True)
class EventHubTarget:
    namespace: str  # the fully qualified host
    hub: str
    tenant: str


def is_eventhub_url(url: str) -> bool:
    return url.lower().startswith(PREFIX)


def parse(sb: SandboxState, url: str) -> EventHubTarget:
    """Check the RBAC form; `BadEventHubUrl` says what is wrong."""
    try:
        inner = URL(url[len(PREFIX):])
    except ValueError:
        raise BadEventHubUrl(f"The notification URL '{url}' is not a valid Event Hubs URL.") from None
    host = (inner.host or "").lower()
    if inner.scheme != "https" or not host:
        raise BadEventHubUrl("An Event Hubs notification URL has the form EventHub:https://<namespace>"
                             ".servicebus.windows.net/eventhubname/<hub>?tenantId=<domain>.")
    if host.endswith(".vault.azure.net"):
        raise BadEventHubUrl("Event Hubs delivery through a Key Vault secret is not emulated by the sandbox; use "
                             "the Azure RBAC form EventHub:https://<namespace>.servicebus.windows.net/eventhubname/"
                             "<hub>?tenantId=<domain>.")
    parts = [p for p in inner.path.split("/") if p]
    if not host.endswith(SUFFIX) or len(parts) != 2 or parts[0].lower() != "eventhubname" or not parts[1]:
        raise BadEventHubUrl("An Event Hubs notification URL has the form EventHub:https://<namespace>"
                             ".servicebus.windows.net/eventhubname/<hub>?tenantId=<domain>.")
    tenant = next((v for k, v in inner.query.items() if k.lower() == "tenantid"), "")
    if tenant.lower() not in (sb.tenant.domain.lower(), sb.tenant.tenant_id.lower()):
        raise BadEventHubUrl(f"The Event Hubs notification URL must name this tenant in tenantId "
                             f"('{sb.tenant.domain}' or '{sb.tenant.tenant_id}').")
    return EventHubTarget(host, parts[1], tenant)


def publish(sb: SandboxState, url: str, body: dict[str, Any]) -> bool:
    """One delivery as one event; False when the namespace or hub does not exist."""
    try:
        target = parse(sb, url)
    except BadEventHubUrl:
        return False
    hub = sb.eventhubs.hub_for(target.namespace, target.hub)
    if hub is None:
        log.info("eventhub_delivery_failed", namespace=target.namespace, hub=target.hub, reason="no_such_hub")
        return False
    event = sb.eventhubs.publish_body(hub, json.dumps(body).encode())
    log.info("eventhub_delivered", hub=hub.name, sequence=event.sequence)
    return True


def send_validation(sb: SandboxState, url: str) -> str | None:
    """The validation message Graph sends instead of a handshake; None, or `unreachable`."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    body = {"value": [{"subscriptionId": "NA", "subscriptionExpirationDateTime": "NA", "clientState": "NA",
                       "changeType": token, "resource": "NA",
                       "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"}}]}
    return None if publish(sb, url, body) else "unreachable"
