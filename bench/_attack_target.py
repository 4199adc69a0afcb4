"""The attack corpus' shared parts: the target runtime, token helpers, outcomes and transport.

See bench/_attack_corpus.py for the kinds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from agentseat.config import GRAPH_CHANGE_TRACKING_APP_ID
from agentseat.runtime.crypto import encrypt_content
from agentseat.runtime.inbox import event_key

MISSING = object()
GENUINE_EXPIRY = "2026-02-02T10:30:34.9097561-08:00"


@dataclass
class Target:
    """One live runtime webhook and what the attack (and its judge) knows about it."""

    base: str
    pid: int
    tenant_id: str
    audience: str  # the app id Graph's validation tokens are issued for
    teams_sub: str
    mail_sub: str
    client_state: str  # the Teams subscription's (every subscription has its own)
    certificate: x509.Certificate  # the agent's public encryption certificate
    certificate_id: str
    chat_id: str  # a real 1:1 chat of the agent
    sender: dict[str, str]  # a colleague: id, upn, name
    agent_user_id: str
    signing_key: RSAPrivateKey  # Entra's (the sandbox's) token signing key: Graph's, not the attacker's
    kid: str
    evil_key: RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                       key_size=2048))
    evil_certificate: x509.Certificate | None = None
    markers: list[str] = field(default_factory=list)  # plaintext of every message forged
    tokens: list[str] = field(default_factory=list)  # every genuine token minted (must never be echoed or logged)
    graph_requests: Callable[[], dict[str, int]] = dict  # the sandbox's request counters
    mail_client_state: str = ""  # the mail subscription's
    subscription_ids: Callable[[], set[str]] = set  # live subscription ids at the sandbox
    # What only the judge sees, for the kinds that follow one captured POST further (bench/_attack_claims.py,
    # bench/_attack_lifecycle.py): people, the runtime's inbox and log, the sandbox's view of Graph.
    agent_upn: str = ""
    sponsor: dict[str, str] = field(default_factory=dict)  # id, upn, name
    sponsor_chat_id: str = ""  # the agent's 1:1 chat with the sponsor
    allowed: dict[str, str] = field(default_factory=dict)  # a colleague on the runtime's allowlist (if it has one)
    allowlist: bool = False  # whether this build reads AGENTSEAT_ALLOW
    inbox: Callable[[], list[tuple[Any, ...]]] = list  # (key, trust, confirmed, text) of every stored event
    log_path: Path | None = None  # the runtime's JSON log
    sandbox: Callable[[str, str, Any], Awaitable[Any]] | None = None  # the sandbox's control API
    subscriptions: Callable[[], dict[str, dict[str, Any]]] = dict  # live subscriptions at the sandbox, by id
    runtime_subscriptions: Callable[[], dict[str, dict[str, Any]]] = dict  # what the runtime holds, by kind
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per forgery: what it sent, what it cost

    def client_state_of(self, subscription_id: str) -> str:
        if subscription_id == self.mail_sub:
            return self.mail_client_state or self.client_state  # one shared secret before per-subscription ones
        return self.client_state

    def __post_init__(self) -> None:
        if self.evil_certificate is None:
            self.evil_certificate = _certificate(self.evil_key)

    # --- tokens ---------------------------------------------------------------------------
    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": self.audience, "iss": f"https://login.microsoftonline.com/{self.tenant_id}/v2.0", "iat": now,
            "nbf": now, "exp": now + 3600, "azp": GRAPH_CHANGE_TRACKING_APP_ID, "azpacr": "2",
            "tid": self.tenant_id, "ver": "2.0", "oid": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not MISSING}

    def token(self, *, key: RSAPrivateKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        """A validation token; genuine (Entra's key, right claims) unless told otherwise."""
        token = jwt.encode(self.claims(**overrides), key or self.signing_key, algorithm="RS256",
                           headers={"kid": kid or self.kid, "typ": "JWT"})
        if key is None:
            self.tokens.append(token)
        return token

    # --- notifications --------------------------------------------------------------------
    def message(self, *, text: str | None = None, message_id: str | None = None, **changes: Any) -> dict[str, Any]:
        """A chatMessage in the agent's real chat, from a colleague, with a unique marker as text."""
        mid = message_id or str(int(time.time() * 1000) * 1000 + len(self.markers))
        marker = text or f"atk-pt-{uuid.uuid4().hex}"
        self.markers.append(marker)
        message: dict[str, Any] = {
            "id": mid, "replyToId": None, "etag": mid, "messageType": "message",
            "createdDateTime": "2026-02-02T17:56:05.949Z", "lastModifiedDateTime": "2026-02-02T17:56:05.949Z",
            "deletedDateTime": None, "chatId": self.chat_id,
            "from": {"application": None, "device": None, "user": {
                "id": self.sender["id"], "displayName": self.sender["name"], "userIdentityType": "aadUser",
                "tenantId": self.tenant_id}},
            "body": {"contentType": "text", "content": marker},
            "attachments": [], "mentions": [], "reactions": [],
        }
        message.update(changes)
        return message

    def key_of(self, message: dict[str, Any]) -> str:
        return event_key("teams", self.chat_id, str(message["id"]))

    def encrypt(self, payload: dict[str, Any] | bytes, *, certificate: x509.Certificate | None = None,
                certificate_id: str | None = None) -> dict[str, str]:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return encrypt_content(data, certificate or self.certificate, certificate_id or self.certificate_id)

    def item(self, *, message: dict[str, Any] | None = None, encrypted: Any = MISSING, subscription: str | None = None,
             client_state: Any = MISSING, tenant: str | None = None, change_type: Any = "created",
             lifecycle: str | None = None) -> dict[str, Any]:
        """One notification item; rich (encrypted `message`) unless `encrypted=None`."""
        message = message or self.message()
        chat = message.get("chatId") if isinstance(message.get("chatId"), str) else self.chat_id
        path = f"chats('{chat}')/messages('{message['id']}')"
        sub = self.teams_sub if subscription is None else subscription
        item: dict[str, Any] = {
            "subscriptionId": sub,
            "subscriptionExpirationDateTime": GENUINE_EXPIRY,
            "tenantId": self.tenant_id if tenant is None else tenant,
            "clientState": self.client_state_of(sub) if client_state is MISSING else client_state,
        }
        if lifecycle is not None:
            item["lifecycleEvent"] = lifecycle
            return item
        item |= {"changeType": change_type, "resource": path,
                 "resourceData": {"id": message["id"], "@odata.type": "#Microsoft.Graph.chatMessage",
                                  "@odata.id": path}}
        if encrypted is MISSING:
            encrypted = self.encrypt(message)
        if encrypted is not None:
            item["encryptedContent"] = encrypted
        if client_state is None:
            item.pop("clientState")
        return item

    def body(self, items: list[dict[str, Any]], tokens: Any = MISSING) -> bytes:
        """A changeNotificationCollection; genuine tokens unless given (None: the key is absent)."""
        collection: dict[str, Any] = {"value": items}
        if tokens is MISSING:
            tokens = [self.token()]
        if tokens is not None:
            collection["validationTokens"] = tokens
        return json.dumps(collection).encode()

    def valid(self) -> tuple[bytes, str]:
        """A notification that is genuine in every way, and the key of its event."""
        message = self.message()
        return self.body([self.item(message=message)]), self.key_of(message)


def _certificate(key: RSAPrivateKey) -> x509.Certificate:
    import datetime as dt

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], alg: str = "none", kid: str = "k") -> str:
    return f"{b64url(json.dumps({'alg': alg, 'kid': kid, 'typ': 'JWT'}).encode())}." \
           f"{b64url(json.dumps(claims).encode())}."


def hs256_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """Key confusion: HS256 keyed with the verifier's public key (PyJWT refuses to make one)."""
    head = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(signature)}"


# --- outcomes and transport ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What one case produced. `problem` is set by a case's own check ("crash: ...", "leak: ...", "unbounded: ...")."""

    case: str
    status: int | None = None
    error: str = ""
    body: bytes = b""
    headers: str = ""
    allowed: frozenset[int] = frozenset({202})
    problem: str = ""
    seconds: float = 0.0
    note: str = ""


async def post(session: aiohttp.ClientSession, t: Target, case: str, body: bytes = b"", *,
               path: str = "/notifications", query: str = "", content_type: str | None = "application/json",
               headers: dict[str, str] | None = None, method: str = "POST", allowed: tuple[int, ...] = (202,),
               timeout: float = 30.0) -> Outcome:
    hdrs = dict(headers or {})
    skip = []
    if content_type is None:
        skip.append("Content-Type")
    else:
        hdrs["Content-Type"] = content_type
    url = t.base + path + (f"?{query}" if query else "")
    began = time.monotonic()
    try:
        async with session.request(method, aiohttp.client.URL(url, encoded=True), data=body, headers=hdrs,
                                   skip_auto_headers=skip, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            data = await resp.read()
            return Outcome(case, resp.status, body=data, headers=str(dict(resp.headers)),
                           allowed=frozenset(allowed), seconds=time.monotonic() - began)
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        return Outcome(case, None, error=type(exc).__name__, allowed=frozenset(allowed),
                       seconds=time.monotonic() - began)


async def raw(t: Target, case: str, chunks: list[bytes], *, pause: float = 0.0, wait: float = 10.0,
              allowed: tuple[int, ...] = (202, 400), expect_reply: bool = True) -> Outcome:
    """Send bytes over a bare TCP connection (for what an HTTP client will not send) and read the answer."""
    host, _, port = t.base.removeprefix("http://").partition(":")
    began = time.monotonic()
    out = Outcome(case, allowed=frozenset(allowed))
    try:
        stream = await anyio.connect_tcp(host, int(port))
    except OSError as exc:
        out.error = type(exc).__name__
        return out
    async with stream:
        try:
            for chunk in chunks:
                await stream.send(chunk)
                if pause:
                    await anyio.sleep(pause)
            data = b""
            with anyio.move_on_after(wait):
                while b"\r\n\r\n" not in data:
                    data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
            out.error = type(exc).__name__ if not data else ""
        out.seconds = time.monotonic() - began
    if data.startswith(b"HTTP/"):  # aiohttp answers a request line without a version in HTTP/0.9
        try:
            out.status = int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            out.status = None
        out.body = data
    elif expect_reply and not out.error:
        out.error = "no answer"
    return out


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          content_length: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {"Content-Type": "application/json"}).items():
        lines.append(f"{k}: {v}")
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- the kinds ----------------------------------------------------------------------------------

Run = Callable[[aiohttp.ClientSession, Target, bool], Awaitable[list[Outcome]]]


@dataclass
class Kind:
    name: str
    what: str
    run: Run
    events: int = 0  # how many events the kind's valid notifications must store (replays: exactly this many)
    limit: bool = False  # demonstrates a limit of Graph's protocol, not a check the runtime could make


def first_cases(cases: list[Any], quick: bool) -> list[Any]:
    return cases[:1] if quick else cases


# --- what a kind that follows one captured POST further measures -------------------------------


def graph_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Graph requests by route between two snapshots of the sandbox's counters (only routes that moved)."""
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) != before.get(k, 0)}


async def settle(t: Target, *, at_least: float = 0.0, quiet: float = 1.0, bound: float = 30.0) -> float:
    """Wait until the runtime's Graph requests stop (no change for `quiet` s, and `at_least` s passed).

    Work a notification queues runs after the 202 (fetches, confirmations, lifecycle jobs), so a
    count taken at once would miss it. Returns the seconds waited.
    """
    began = time.monotonic()
    last, still = t.graph_requests(), time.monotonic()
    with anyio.move_on_after(bound):
        while True:
            await anyio.sleep(0.2)
            now = t.graph_requests()
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= quiet and time.monotonic() - began >= at_least:
                break
    return time.monotonic() - began


def log_end(t: Target) -> int:
    """The runtime log's size now: `log_since(t, offset)` reads what it writes after."""
    return t.log_path.stat().st_size if t.log_path is not None and t.log_path.exists() else 0


def log_since(t: Target, offset: int) -> list[dict[str, Any]]:
    from ._harness import log_events

    return log_events(t.log_path, offset)[0] if t.log_path is not None else []


def count_log(lines: list[dict[str, Any]], event: str, **fields: Any) -> int:
    return sum(1 for line in lines if line.get("event") == event
               and all(line.get(k) == v for k, v in fields.items()))


async def genuine_deliveries(t: Target, tag: str, *, mail: bool = True, bound: float = 20.0) -> tuple[list[str], str]:
    """A DM (and a mail) sent through the sandbox, so Graph itself notifies the runtime; waits until
    stored. Returns (their event keys, a problem or "")."""
    assert t.sandbox is not None
    text = f"atk-genuine-{tag}-{uuid.uuid4().hex}"
    t.markers.append(text)
    dm = await t.sandbox("POST", "/_sandbox/messages", {"from": t.sender["upn"], "to": t.agent_upn, "text": text})
    keys = [event_key("teams", dm["chat_id"], dm["message_id"])]
    if mail:
        sent = await t.sandbox("POST", "/_sandbox/mail", {"from": t.sender["upn"], "to": t.agent_upn,
                                                         "subject": text, "body": text})
        keys.append(event_key("mail", None, sent["message_id"]))
    with anyio.move_on_after(bound):
        while not set(keys) <= {row[0] for row in t.inbox()}:
            await anyio.sleep(0.1)
    missing = set(keys) - {row[0] for row in t.inbox()}
    return keys, (f"crash: genuine deliveries not stored within {bound:.0f} s: {sorted(k[:5] for k in missing)}"
                  if missing else "")
