"""Test helpers for subscriptions and delivery: a real webhook receiver, a Graph caller,
and ways to put chat messages and mail into the sandbox.

The receiver is an aiohttp server on 127.0.0.1 (plain http on loopback, which
`SandboxOptions.allow_http_loopback` allows as a stand-in for the tunnel's TLS).
It answers validation handshakes and records every notification POST; each
path can be told how to misbehave.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.clock import iso
from agentseat.sandbox.tenant import Chat, ChatMessage, MailMessage, new_id
from agentseat.sandbox.entra.tokens import delegated_token, user_graph_token
from tests.sandbox._agent import self_signed


def options(**kwargs: Any) -> pytest.MarkDecorator:
    """Run one test with its own emulator knobs (overrides the `sandbox_options` fixture)."""
    return pytest.mark.parametrize("sandbox_options", [SandboxOptions(**kwargs)], ids=["options"])


@dataclass
class Validation:
    path: str
    token: str
    raw_query: str
    query: dict[str, str]
    content_type: str
    body: bytes


@dataclass
class Receiver:
    """A webhook: answers validation requests and records notification POSTs per path."""

    validation_mode: dict[str, str] = field(default_factory=dict)  # path -> echo|wrong|encoded|html|status|sleep
    validation_sleep: float = 2.0
    status: dict[str, int] = field(default_factory=dict)  # path -> steady status (default 202)
    script: dict[str, list[int]] = field(default_factory=dict)  # path -> one-shot statuses, first first
    delay: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    delays: dict[str, list[float]] = field(default_factory=dict)  # path -> one-shot delays
    validations: list[Validation] = field(default_factory=list)
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        if "validationToken" in request.query:
            token = request.query["validationToken"]
            self.validations.append(Validation(path, token, request.rel_url.raw_query_string, dict(request.query),
                                               request.headers.get("Content-Type", ""), await request.read()))
            mode = self.validation_mode.get(path, "echo")
            if mode == "sleep":
                await anyio.sleep(self.validation_sleep)
            if mode == "wrong":
                return web.Response(text="not-the-token", content_type="text/plain")
            if mode == "encoded":
                return web.Response(text=quote(token, safe=""), content_type="text/plain")
            if mode == "html":
                return web.Response(text=token, content_type="text/html")
            if mode == "status":
                return web.Response(text=token, content_type="text/plain", status=403)
            return web.Response(text=token, content_type="text/plain")
        body = json.loads(await request.read())
        self.posts.append((path, body))
        pending = self.delays.get(path)
        wait = pending.pop(0) if pending else self.delay.get(path, 0.0)
        if wait:
            await anyio.sleep(wait)
        shots = self.script.get(path)
        return web.Response(status=shots.pop(0) if shots else self.status.get(path, 202))

    # --- reading what arrived ------------------------------------------------------------
    def bodies(self, path: str = "/notify") -> list[dict[str, Any]]:
        return [body for p, body in self.posts if p == path]

    def items(self, path: str = "/notify") -> list[dict[str, Any]]:
        return [item for body in self.bodies(path) for item in body["value"]]

    def events(self, path: str = "/lifecycle", event: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self.items(path) if "lifecycleEvent" in i and (event is None or i["lifecycleEvent"] == event)]


async def wait_until(condition: Callable[[], bool], *, limit: float = 30.0) -> None:
    """Wait for a condition; `limit` is only a safety bound, never an assertion about speed."""
    with anyio.fail_after(limit):
        while not condition():
            await anyio.sleep(0.02)


class Graph:
    """Calls the sandbox's Graph over real HTTPS as a delegated caller."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession, user_id: str | None = None,
                 *, app_id: str | None = None, scopes: list[str] | None = None) -> None:
        self.sb, self.session = sandbox, session
        self.user_id = user_id or sandbox.role("agent_user")
        self.app_id, self.scopes = app_id, scopes

    def token(self) -> str:
        if self.app_id is None:
            return user_graph_token(self.sb, self.user_id, self.scopes)
        from agentseat.sandbox.tenant import AGENT_SCOPES

        return delegated_token(self.sb, user_id=self.user_id, app_id=self.app_id,
                               scopes=self.scopes or list(AGENT_SCOPES))[0]

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token()}"}
        async with self.session.request(method, self.sb.graph_url + path, json=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def subscribe(self, resource: str, url: str, *, minutes: float = 50, **extra: Any) -> tuple[int, Any]:
        body = {"changeType": "created", "notificationUrl": url, "resource": resource,
                "expirationDateTime": iso(self.sb.clock.now() + minutes * 60), "clientState": "s3cret", **extra}
        return await self.call("POST", "/subscriptions", {k: v for k, v in body.items() if v is not None})


def https_session(sandbox: Sandbox) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sandbox.client_ssl_context()))


def certificate(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, x509.Certificate, str]:
    """A self-signed certificate for rich notifications: (private key, certificate, base64 DER)."""
    return _certificate(bits)


@lru_cache(maxsize=4)
def _certificate(bits: int) -> tuple[rsa.RSAPrivateKey, x509.Certificate, str]:
    key, cert = self_signed("agentseat notifications", bits=bits, days=30)
    return key, cert, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def rich(cert_id: str = "agentseat-cert-1", bits: int = 2048) -> dict[str, Any]:
    return {"includeResourceData": True, "encryptionCertificate": certificate(bits)[2],
            "encryptionCertificateId": cert_id}


# --- putting changes into the sandbox (on its own event loop) ----------------------------------
def add_chat(sandbox: Sandbox, member_ids: list[str], chat_type: str = "oneOnOne") -> Chat:
    def add() -> Chat:
        chat = Chat(id=f"19:{new_id()}@unq.gbl.spaces", chat_type=chat_type, member_ids=list(member_ids),
                    created=sandbox.clock.now())
        sandbox.tenant.chats[chat.id] = chat
        sandbox.tenant.messages[chat.id] = []
        return chat

    return sandbox.portal.call(add)  # type: ignore[attr-defined, no-any-return]


def post_message(sandbox: Sandbox, chat: Chat, from_id: str, text: str,
                 change_type: str = "created") -> tuple[ChatMessage, int]:
    """Store a chat message and hand it to the engine; returns it and how many notifications were queued."""
    def post() -> tuple[ChatMessage, int]:
        now = sandbox.clock.now()
        msg = ChatMessage(id=str(int(now * 1000) + len(sandbox.tenant.messages[chat.id])), chat_id=chat.id,
                          from_id=from_id, content=text, content_type="text", created=now, last_modified=now)
        sandbox.tenant.messages[chat.id].append(msg)
        return msg, sandbox.delivery.chat_message(chat, msg, change_type)

    return sandbox.portal.call(post)  # type: ignore[attr-defined, no-any-return]


def deliver_mail(sandbox: Sandbox, owner_id: str, subject: str, body: str = "secret body text",
                 folder: str = "inbox") -> tuple[MailMessage, int]:
    def deliver() -> tuple[MailMessage, int]:
        now = sandbox.clock.now()
        msg = MailMessage(id="AAMkA" + new_id().replace("-", ""), owner_id=owner_id, folder=folder, subject=subject,
                          body=body, body_type="text", from_address="grace@contoso.test", from_name="Grace Hopper",
                          to=["agent@contoso.test"], received=now, conversation_id="AAQkA" + new_id(),
                          internet_message_id=f"<{new_id()}@contoso.test>")
        sandbox.tenant.mail.setdefault(owner_id, []).append(msg)
        return msg, sandbox.delivery.mail_message(msg)

    return sandbox.portal.call(deliver)  # type: ignore[attr-defined, no-any-return]


def set_faults(sandbox: Sandbox, **notifications: Any) -> None:
    from agentseat.sandbox.faults import Faults

    faults = Faults.from_json({"notifications": notifications, "seed": 7})
    sandbox.portal.call(setattr, sandbox, "faults", faults)  # type: ignore[attr-defined]


def stat(sandbox: Sandbox, name: str) -> int:
    return sandbox.stats.notifications.get(name, 0)
