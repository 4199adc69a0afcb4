"""Where Graph is told to deliver: the webhook's two URLs, or one Event Hubs address for both.

A webhook subscription names `<public URL>/notifications` and `<public URL>/lifecycle`.
Event Hubs delivery names the hub's `EventHub:https://...` address as both
`notificationUrl` and `lifecycleNotificationUrl` ("Receive change notifications through
Azure Event Hubs": there is no validation handshake, and the lifecycle events arrive in
the same hub). The manager compares live subscriptions against these strings.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Endpoints", "eventhub_endpoints", "webhook_endpoints"]


@dataclass(frozen=True)
class Endpoints:
    notification: str
    lifecycle: str


def webhook_endpoints(base: str) -> Endpoints:
    base = base.rstrip("/")
    return Endpoints(f"{base}/notifications", f"{base}/lifecycle")


def eventhub_endpoints(address: str) -> Endpoints:
    return Endpoints(address, address)
