"""Forging what one captured genuine POST allows: the clientState, a live validation token (minted
by the sandbox exactly as for its own deliveries) and the agent's public encryption certificate."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from cryptography import x509

from agentseat.runtime.app import Runtime
from agentseat.runtime.crypto import encrypt_content
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.notifications.payloads import token_audience, validation_token
from agentseat.sandbox.tenant import Subscription


def subscription(sandbox: Sandbox, runtime: Runtime, kind: str) -> Subscription:
    """The sandbox's record of the runtime's live subscription of `kind` (what a captured POST reveals)."""
    assert runtime.manager is not None
    return sandbox.tenant.subscriptions[runtime.manager.states[kind].id]


def item(sandbox: Sandbox, sub: Subscription, resource: str, resource_id: str,
         payload: dict[str, Any] | None) -> dict[str, Any]:
    """One notification item with the genuine clientState; encrypted to the agent's certificate if `payload`."""
    out: dict[str, Any] = {
        "subscriptionId": sub.id, "changeType": "created", "clientState": sub.client_state,
        "tenantId": sandbox.tenant.tenant_id, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "resource": resource, "resourceData": {"id": resource_id, "@odata.id": resource},
    }
    if payload is not None:
        certificate = x509.load_der_x509_certificate(base64.b64decode(sub.encryption_certificate or ""))
        out["encryptedContent"] = encrypt_content(json.dumps(payload).encode(), certificate,
                                                   sub.encryption_certificate_id or "")
    return out


async def post(sandbox: Sandbox, sub: Subscription, items: list[dict[str, Any]]) -> int:
    """POST to the runtime's webhook as the captured delivery would, with a live validation token."""
    body = {"value": items, "validationTokens": [validation_token(sandbox, token_audience(sub))]}
    async with aiohttp.ClientSession() as session, session.post(sub.notification_url, json=body) as resp:
        return resp.status


def chat_item(sandbox: Sandbox, sub: Subscription, message: dict[str, Any]) -> dict[str, Any]:
    resource = f"chats('{message['chatId']}')/messages('{message['id']}')"
    return item(sandbox, sub, resource, message["id"], message)


def claim(sandbox: Sandbox, chat_id: str, message_id: str, sender: str, text: str) -> dict[str, Any]:
    """A chatMessage as Graph would encrypt it, written by the attacker."""
    user = sandbox.tenant.users[sandbox.role(sender)]
    return {
        "id": message_id, "chatId": chat_id, "messageType": "message", "deletedDateTime": None,
        "createdDateTime": "2026-12-06T03:00:00.000Z", "lastModifiedDateTime": "2026-12-06T03:00:00.000Z",
        "from": {"user": {"id": user.id, "displayName": user.display_name, "userIdentityType": "aadUser",
                          "tenantId": sandbox.tenant.tenant_id}},
        "body": {"contentType": "text", "content": text},
    }
