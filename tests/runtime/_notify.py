"""Test peers and builders for the notification pipeline and webhook tests.

Builds genuine Graph-shaped notifications: resource data encrypted with
`crypto.encrypt_content` for a real certificate, and validation tokens signed
by an RSA key that a loopback JWKS server (standing in for Entra's keys
endpoint) publishes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from agentseat.config import GRAPH_CHANGE_TRACKING_APP_ID, Settings
from agentseat.errors import InboxError
from agentseat.runtime.crypto import KeyRing, encrypt_content
from agentseat.runtime.inbox import Event, Inbox
from agentseat.runtime.normalize import TrustPolicy
from agentseat.graph.subscription import KnownSubscription
from agentseat.runtime.pipeline import NotificationPipeline
from agentseat.runtime.verify import JwksCache
from agentseat.runtime.webhook import WebhookServer

TENANT = "9f4ebab6-520d-49c0-85cc-7b25c78d4a93"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
AUDIENCE = "925bff9f-f6e2-4a69-b858-f71ea2b9b6d0"
BLUEPRINT = "b1ee0000-f6e2-4a69-b858-f71ea2b9b6d0"  # the Agent Identity's Blueprint app id
AGENT_ID = "aaaaaaaa-0000-0000-0000-00000000a9e7"
SPONSOR_ID = "5b0d5f3e-1111-4c1e-9d1a-5a0a5a0a5a0a"
COLLEAGUE_ID = "c011ea90-2222-4c1e-9d1a-5a0a5a0a5a0a"
TEAMS_SUB = "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f"
MAIL_SUB = "20493aa0-4d29-4df5-bc0c-ef742cc6cd7f"
CLIENT_STATE = "cs-Secret-7f3a9c1e5b2d4a6f8e0c"
MAIL_CLIENT_STATE = "cs-Mail-0e9d8c7b6a5f4e3d2c1b"
CHAT_ID = "19:8ea0e38b-efb3-4757-924a-5f94061cf8c2_97f62344-57dc-409c-88ad-c4af14158ff5@unq.gbl.spaces"
CERT_ID = "agentseat-cert-1"
JWKS_PATH = "/common/discovery/v2.0/keys"
MAX_BODY = 256 * 1024


def make_certificate(key: RSAPrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agentseat-test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )


@dataclass
class Keys:
    """The agent's encryption key and certificate, and Entra's token signing keys."""

    encryption: RSAPrivateKey
    certificate: x509.Certificate
    signing: RSAPrivateKey
    evil: RSAPrivateKey


def make_keys() -> Keys:
    def new() -> RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    encryption = new()
    return Keys(encryption, make_certificate(encryption), new(), new())


@pytest.fixture(scope="module")
def keys() -> Keys:
    """The agent's key and Graph's signing key: RSA generation is slow, so once per module."""
    return make_keys()


# --- tokens -----------------------------------------------------------------------------


def token_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": AUDIENCE, "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "iat": now, "nbf": now,
        "exp": now + 3600, "azp": GRAPH_CHANGE_TRACKING_APP_ID, "azpacr": "2", "tid": TENANT, "ver": "2.0",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def mint(key: RSAPrivateKey, kid: str = "k1", **overrides: Any) -> str:
    return jwt.encode(token_claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def unsigned_token(**overrides: Any) -> str:
    """An `alg: none` token, which PyJWT will not make."""
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'kid': 'k1', 'typ': 'JWT'})}.{b64(token_claims(**overrides))}."


class JwksPeer:
    """login.microsoftonline.com's keys endpoint, with a hit counter."""

    def __init__(self, keys: dict[str, RSAPrivateKey]) -> None:
        self.keys = keys
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        jwks = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwks.append({**jwk, "kid": kid, "use": "sig"})
        return web.json_response({"keys": jwks})


@asynccontextmanager
async def serve_jwks(peer: JwksPeer) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(JWKS_PATH, peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}{JWKS_PATH}"
    finally:
        await runner.cleanup()


# --- notifications ------------------------------------------------------------------------


def chat_message(message_id: str = "1612289765949", *, sender_id: str = SPONSOR_ID, text: str = "hi there",
                 chat_id: str = CHAT_ID, **changes: Any) -> dict[str, Any]:
    """A chatMessage as Graph encrypts it (teams-changenotifications-chatmessage)."""
    message: dict[str, Any] = {
        "@odata.context": f"https://graph.microsoft.com/$metadata#chats('{chat_id}')/messages/$entity",
        "id": message_id, "replyToId": None, "etag": message_id, "messageType": "message",
        "createdDateTime": "2026-02-02T17:56:05.949Z", "lastModifiedDateTime": "2026-02-02T17:56:05.949Z",
        "deletedDateTime": None, "subject": None, "chatId": chat_id, "importance": "normal", "locale": "en-us",
        "from": {"application": None, "device": None, "user": {
            "@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": sender_id, "displayName": "Sam Sponsor",
            "userIdentityType": "aadUser", "tenantId": TENANT}},
        "body": {"contentType": "html", "content": f"<p>{text}</p>"},
        "attachments": [], "mentions": [], "reactions": [],
    }
    message.update(changes)
    return message


def change_item(*, subscription: str = TEAMS_SUB, client_state: str | None = CLIENT_STATE, tenant: str = TENANT,
                resource: str | None = None, resource_id: str = "1612289765949",
                encrypted: dict[str, str] | None = None, change_type: str = "created") -> dict[str, Any]:
    resource = resource or f"chats('{CHAT_ID}')/messages('{resource_id}')"
    item: dict[str, Any] = {
        "subscriptionId": subscription, "changeType": change_type, "clientState": client_state,
        "subscriptionExpirationDateTime": "2026-02-02T10:30:34.9097561-08:00", "resource": resource,
        "resourceData": {"id": resource_id, "@odata.type": "#Microsoft.Graph.chatMessage", "@odata.id": resource},
        "tenantId": tenant,
    }
    if encrypted is not None:
        item["encryptedContent"] = encrypted
    return item


def encrypt(keys: Keys, resource: dict[str, Any]) -> dict[str, str]:
    return encrypt_content(json.dumps(resource).encode(), keys.certificate, CERT_ID)


def rich_chat_item(keys: Keys, message: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    message = message or chat_message()
    return change_item(resource_id=message["id"], encrypted=encrypt(keys, message), **changes)


def mail_partial(message_id: str = "AAMkAGUwNjQ4ZjIxAAA=") -> dict[str, Any]:
    """What a rich mail notification decrypts to: the $select-ed fields, never the body."""
    return {
        "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"', "id": message_id, "subject": "Quarterly numbers",
        "receivedDateTime": "2026-02-02T17:56:05Z", "bodyPreview": "see attached",
        "from": {"emailAddress": {"name": "Sam Sponsor", "address": "sam@contoso.example"}},
    }


def rich_mail_item(keys: Keys, partial: dict[str, Any] | None = None) -> dict[str, Any]:
    partial = partial or mail_partial()
    resource = f"Users/{AGENT_ID}/Messages/{partial['id']}"
    return change_item(subscription=MAIL_SUB, client_state=MAIL_CLIENT_STATE, resource=resource,
                       resource_id=partial["id"], encrypted=encrypt(keys, partial))


def lifecycle_item(event: str = "reauthorizationRequired", *, subscription: str = TEAMS_SUB,
                   client_state: str = CLIENT_STATE) -> dict[str, Any]:
    return {"subscriptionId": subscription, "subscriptionExpirationDateTime": "2026-02-02T11:00:00.0000000Z",
            "tenantId": TENANT, "clientState": client_state, "lifecycleEvent": event}


def body(items: list[dict[str, Any]], tokens: list[str] | None = None) -> bytes:
    collection: dict[str, Any] = {"value": items}
    if tokens is not None:
        collection["validationTokens"] = tokens
    return json.dumps(collection).encode()


# --- the system under test ---------------------------------------------------------------


class CountingInbox(Inbox):
    """A real Inbox that counts its write transactions and can be made to fail like a full disk."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.appends = 0
        self.disk_full = False

    def insert(self, events: Any) -> tuple[list[Event], list[str]]:  # under append, and the intake's path
        if self.disk_full:
            raise InboxError("inbox append failed: the disk is full", hint="free space")
        self.appends += 1
        return super().insert(events)


@dataclass
class Calls:
    lifecycle: list[tuple[KnownSubscription, str]] = field(default_factory=list)
    mail: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    chat: list[tuple[str, str]] = field(default_factory=list)

    async def on_lifecycle(self, sub: KnownSubscription, event: str) -> None:
        self.lifecycle.append((sub, event))

    async def on_mail_fetch(self, message_id: str, partial: dict[str, Any]) -> None:
        self.mail.append((message_id, partial))

    async def on_chat_fetch(self, chat_id: str, message_id: str) -> None:
        self.chat.append((chat_id, message_id))


@dataclass
class World:
    keys: Keys
    settings: Settings
    inbox: CountingInbox
    peer: JwksPeer
    jwks: JwksCache
    subscriptions: dict[str, KnownSubscription]
    calls: Calls
    pipeline: NotificationPipeline
    session: aiohttp.ClientSession
    keyring: KeyRing
    policy: TrustPolicy

    def token(self, **overrides: Any) -> str:
        return mint(self.keys.signing, **overrides)

    def basic_subscriptions(self) -> None:
        """Make both subscriptions ones created without resource data (their items name ids only)."""
        for sub_id, sub in list(self.subscriptions.items()):
            self.subscriptions[sub_id] = KnownSubscription(sub.id, sub.kind, sub.client_state, rich=False)

    def replace_pipeline(self, **callbacks: Any) -> None:
        """Rebuild the pipeline with other callbacks (the world's recorders by default)."""
        options: dict[str, Any] = {"on_lifecycle": self.calls.on_lifecycle, "on_mail_fetch": self.calls.on_mail_fetch,
                                   "on_chat_fetch": self.calls.on_chat_fetch}
        options.update(callbacks)
        self.pipeline = NotificationPipeline(settings=self.settings, inbox=self.inbox, keyring=self.keyring,
                                             jwks=self.jwks, policy=self.policy, subscriptions=self.subscriptions,
                                             **options)


@asynccontextmanager
async def make_world(tmp_path: Path, keys: Keys) -> AsyncIterator[World]:
    settings = Settings(_env_file=None, state_dir=tmp_path / "state", tenant_id=TENANT, agent_id=AUDIENCE,
                        blueprint_app_id=BLUEPRINT, agent_user_id=AGENT_ID, webhook_host="127.0.0.1", webhook_port=0, webhook_max_body=MAX_BODY)
    keyring = KeyRing()
    keyring.add(keys.encryption, certificate=keys.certificate, certificate_id=CERT_ID)
    policy = TrustPolicy(tenant_id=TENANT, sponsor_ids={SPONSOR_ID}, own_ids={AGENT_ID}, domains={"contoso.example"})
    subscriptions = {TEAMS_SUB: KnownSubscription(TEAMS_SUB, "teams", CLIENT_STATE),
                     MAIL_SUB: KnownSubscription(MAIL_SUB, "mail", MAIL_CLIENT_STATE)}
    calls = Calls()
    peer = JwksPeer({"k1": keys.signing})
    inbox = CountingInbox(tmp_path / "inbox.sqlite3", own_ids={AGENT_ID})
    async with serve_jwks(peer) as jwks_url, aiohttp.ClientSession() as session:
        jwks = JwksCache(jwks_url, session)
        pipeline = NotificationPipeline(
            settings=settings, inbox=inbox, keyring=keyring, jwks=jwks, policy=policy, subscriptions=subscriptions,
            on_lifecycle=calls.on_lifecycle, on_mail_fetch=calls.on_mail_fetch, on_chat_fetch=calls.on_chat_fetch)
        try:
            yield World(keys, settings, inbox, peer, jwks, subscriptions, calls, pipeline, session, keyring, policy)
        finally:
            inbox.close()


@asynccontextmanager
async def serving(world: World) -> AsyncIterator[tuple[str, WebhookServer]]:
    """Run a WebhookServer on a free loopback port; yield its base URL."""
    server = WebhookServer(world.settings, world.pipeline)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.run)
        try:
            yield f"http://127.0.0.1:{port}", server
        finally:
            tg.cancel_scope.cancel()


def new_id() -> str:
    return str(uuid.uuid4())
