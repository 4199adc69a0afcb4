"""End to end: the sandbox's delivery engine validates, encrypts, signs and POSTs to a real WebhookServer.

The sandbox (tests/conftest.py) is the local Graph and Entra: the subscription is
created through its Graph API, the handshake and the notifications come from its
delivery engine, and the validation tokens are checked against its JWKS over TLS.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import structlog
from cryptography.hazmat.primitives import serialization

from agentseat.config import Settings
from agentseat.runtime.crypto import KeyRing
from agentseat.runtime.normalize import TrustPolicy
from agentseat.graph.subscription import KnownSubscription
from agentseat.runtime.pipeline import NotificationPipeline
from agentseat.runtime.verify import JwksCache
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.clock import iso
from agentseat.sandbox.entra.tokens import user_graph_token
from agentseat.subscriptions.specs import MAIL_SELECT
from tests.sandbox._webhook import certificate as sandbox_certificate

from ._notify import CERT_ID, Calls, CountingInbox, JwksPeer, Keys, World, new_id, serving


def dropped_reasons(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["reason"] for entry in logs if entry["event"] == "notification_dropped"]


@asynccontextmanager
async def sandbox_runtime(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[tuple[World, str]]:
    """The webhook and pipeline configured for the sandbox tenant, as runtime/app.py wires them."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sandbox.client_ssl_context())) as session:
        key, cert, _ = sandbox_certificate()
        keys = Keys(key, cert, key, key)
        agent = sandbox.role("agent_user")
        settings = Settings(_env_file=None, state_dir=tmp_path / "state", tenant_id=sandbox.tenant.tenant_id,
                            agent_id=sandbox.role("agent_identity"), agent_user_id=agent, webhook_port=0,
                            jwks_url=f"{sandbox.url}/common/discovery/v2.0/keys")
        keyring = KeyRing()
        keyring.add(key, certificate=cert, certificate_id=CERT_ID)
        policy = TrustPolicy(tenant_id=sandbox.tenant.tenant_id, sponsor_ids={sandbox.role("sponsor")},
                             own_ids={agent})
        inbox = CountingInbox(tmp_path / "inbox.sqlite3", own_ids={agent})
        jwks = JwksCache(settings.jwks_url, session, ssl=sandbox.client_ssl_context())
        calls, subscriptions = Calls(), dict[str, KnownSubscription]()
        pipeline = NotificationPipeline(settings=settings, inbox=inbox, keyring=keyring, jwks=jwks, policy=policy,
                                        subscriptions=subscriptions, on_lifecycle=calls.on_lifecycle,
                                        on_mail_fetch=calls.on_mail_fetch, on_chat_fetch=calls.on_chat_fetch)
        world = World(keys, settings, inbox, JwksPeer({}), jwks, subscriptions, calls, pipeline, session, keyring,
                      policy)
        try:
            async with serving(world) as (base, _):
                yield world, base
        finally:
            inbox.close()


async def subscribe(sandbox: Sandbox, world: World, base: str, resource: str, kind: str) -> str:
    """Create a rich subscription through the sandbox's Graph, as the subscription manager does."""
    cert_b64 = base64.b64encode(world.keys.certificate.public_bytes(serialization.Encoding.DER)).decode()
    client_state = f"state-{new_id()}"
    body = {"changeType": "created", "notificationUrl": f"{base}/notifications",
            "lifecycleNotificationUrl": f"{base}/lifecycle", "resource": resource,
            "expirationDateTime": iso(sandbox.clock.now() + 3000), "clientState": client_state,
            "includeResourceData": True, "encryptionCertificate": cert_b64, "encryptionCertificateId": CERT_ID}
    token = user_graph_token(sandbox, sandbox.role("agent_user"))
    async with world.session.post(f"{sandbox.graph_url}/subscriptions", json=body,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
        created = await r.json()
        assert r.status == 201, created
    world.subscriptions[created["id"]] = KnownSubscription(created["id"], kind, client_state)  # type: ignore[arg-type]
    return str(created["id"])


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(30):  # a safety bound for a hung delivery, not a speed assertion
        while not condition():
            await anyio.sleep(0.02)


async def test_sandbox_delivers_a_dm_that_is_stored_as_one_event(sandbox: Sandbox, tmp_path: Path) -> None:
    async with sandbox_runtime(sandbox, tmp_path) as (world, base):
        await subscribe(sandbox, world, base, f"/users/{sandbox.role('agent_user')}/chats/getAllMessages", "teams")
        sponsor = sandbox.tenant.users[sandbox.role("sponsor")]
        agent = sandbox.tenant.users[sandbox.role("agent_user")]
        with structlog.testing.capture_logs() as logs:
            async with world.session.post(f"{sandbox.url}/_sandbox/messages",
                                          json={"from": sponsor.upn, "to": agent.upn, "text": "hi"}) as r:
                assert r.status == 201
                posted = await r.json()
            await until(lambda: world.inbox.count() == 1)
        [event] = world.inbox.read(0)
        assert (event.chat_id, event.message_id, event.source) == (posted["chat_id"], posted["message_id"], "webhook")
        assert (event.sender_id, event.trust, event.text) == (sponsor.id, "sponsor", "hi")
        assert dropped_reasons(logs) == []
        # The agent's own reply is delivered too (Graph notifies senders) but never becomes an event.
        async with world.session.post(f"{sandbox.url}/_sandbox/messages",
                                      json={"from": agent.upn, "to": sponsor.upn, "text": "on it"}) as r:
            assert r.status == 201
        await until(lambda: sandbox.stats.notifications.get("sent", 0) >= 2)
        assert world.inbox.count() == 1


async def test_sandbox_mail_and_lifecycle_reach_the_callbacks(sandbox: Sandbox, tmp_path: Path) -> None:
    async with sandbox_runtime(sandbox, tmp_path) as (world, base):
        sub_id = await subscribe(sandbox, world, base, f"/me/mailFolders('inbox')/messages?$select={MAIL_SELECT}",
                                 "mail")
        agent = sandbox.tenant.users[sandbox.role("agent_user")]
        async with world.session.post(f"{sandbox.url}/_sandbox/mail", json={
                "from": "grace@contoso.test", "to": agent.upn, "subject": "numbers", "body": "the body"}) as r:
            assert r.status == 201
        await until(lambda: len(world.calls.mail) == 1)
        message_id, partial = world.calls.mail[0]
        assert partial["id"] == message_id and partial["subject"] == "numbers" and "body" not in partial
        assert world.inbox.count() == 0
        async with world.session.post(f"{sandbox.url}/_sandbox/subscriptions/{sub_id}/reauthorize") as r:
            assert r.status == 200
        await until(lambda: len(world.calls.lifecycle) == 1)
        assert [(sub.id, event) for sub, event in world.calls.lifecycle] == [(sub_id, "reauthorizationRequired")]
