"""The attack corpus: forged and malformed notifications and handshakes, by kind.

Every kind is an async function that sends its cases to a live runtime webhook
and returns one `Outcome` per case; bench/attack.py judges them (status codes,
the inbox, the process, its log) and tests/runtime/test_webhook_attacks.py runs
the first case of each kind. The attacker here knows what a real one could:
the webhook URL, the subscription ids, the agent's public certificate, Entra's
public signing keys, a key of its own. Some kinds also use what only Graph has
(the clientState, a genuine validation token, the signing key) to show that each
check stands on its own: a notification that is genuine in every way but one is
still dropped.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
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
    client_state: str
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
    subscription_ids: Callable[[], set[str]] = set  # live subscription ids at the sandbox

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
        path = f"chats('{self.chat_id}')/messages('{message['id']}')"
        item: dict[str, Any] = {
            "subscriptionId": self.teams_sub if subscription is None else subscription,
            "subscriptionExpirationDateTime": GENUINE_EXPIRY,
            "tenantId": self.tenant_id if tenant is None else tenant,
            "clientState": self.client_state if client_state is MISSING else client_state,
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any], alg: str = "none", kid: str = "k") -> str:
    return f"{_b64url(json.dumps({'alg': alg, 'kid': kid, 'typ': 'JWT'}).encode())}." \
           f"{_b64url(json.dumps(claims).encode())}."


def hs256_token(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """Key confusion: HS256 keyed with the verifier's public key (PyJWT refuses to make one)."""
    head = _b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{_b64url(signature)}"


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


def _http(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
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


def _first(cases: list[Any], quick: bool) -> list[Any]:
    return cases[:1] if quick else cases


async def client_state(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    real = t.client_state
    variants = [("wrong", "not-the-client-state"), ("missing", None), ("empty", ""), ("case_changed", real.swapcase()),
                ("truncated", real[:-1]), ("extended", real + "x"), ("padded", f" {real} "), ("huge", "x" * 100_000),
                ("number", 12345), ("object", {"clientState": real})]
    out = []
    for name, value in _first(variants, quick):
        out.append(await post(s, t, name, t.body([t.item(client_state=value)])))
    return out


async def unknown_subscription(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    ids = [("random_guid", str(uuid.uuid4())), ("path", "../../subscriptions"), ("huge", "a" * 200_000),
           ("empty", ""), ("teams_id_uppercased", t.teams_sub.upper()), ("nul", "\u0000" + t.teams_sub)]
    return [await post(s, t, name, t.body([t.item(subscription=sid)])) for name, sid in _first(ids, quick)]


async def wrong_tenant(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    tenants = [("other", str(uuid.uuid4())), ("empty", ""), ("common", "common")]
    out = []
    for name, tenant in _first(tenants, quick):
        out.append(await post(s, t, name, t.body([t.item(tenant=tenant)], [t.token(tid=tenant if tenant else MISSING)])))
    return out


async def replay_same(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """One genuine notification sent twice in a row and five times at once: one event."""
    body, key = t.valid()
    out = [await post(s, t, "first", body), await post(s, t, "again", body)]
    if not quick:
        async with anyio.create_task_group() as tg:
            async def one(n: int) -> None:
                out.append(await post(s, t, f"concurrent_{n}", body))
            for n in range(5):
                tg.start_soon(one, n)
    out[0].note = key
    return out


async def replay_old(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A genuine notification stored earlier, replayed later: no second event.

    Then the same items under the token they came with, now expired: dropped.
    """
    message = t.message()
    item = t.item(message=message)
    body = t.body([item])
    out = [await post(s, t, "original", body)]
    out[0].note = t.key_of(message)
    await anyio.sleep(0.5 if quick else 2.0)
    out.append(await post(s, t, "replayed_later", body))
    if not quick:
        expired = t.token(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200, exp=int(time.time()) - 3600)
        out.append(await post(s, t, "replayed_with_expired_token", t.body([item], [expired])))
    return out


async def token_other_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    tokens = [("entra_kid_attacker_key", t.token(key=t.evil_key, kid=t.kid)),
              ("signature_of_other_token", _swap_signature(t.token(), t.token(key=t.evil_key, kid=t.kid))),
              ("payload_swapped", _swap_payload(t.token(), t.claims(aud=str(uuid.uuid4()))))]
    return [await post(s, t, n, t.body([t.item()], [tok])) for n, tok in _first(tokens, quick)]


def _swap_signature(good: str, other: str) -> str:
    return ".".join(good.split(".")[:2] + [other.split(".")[2]])


def _swap_payload(good: str, claims: dict[str, Any]) -> str:
    head, _, sig = good.split(".")
    return f"{head}.{_b64url(json.dumps(claims).encode())}.{sig}"


async def token_unknown_kid(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A key id the JWKS lacks: the runtime answers 500 so that Graph retries after a key
    rotation ("unknown_kid", pipeline._RETRYABLE_TOKEN_REASONS); nothing is stored."""
    tokens = [("attacker_kid", t.token(key=t.evil_key, kid="attacker-kid")),
              ("empty_kid", t.token(key=t.evil_key, kid=""))]
    out = []
    for name, tok in _first(tokens, quick):
        out.append(await post(s, t, name, t.body([t.item()], [tok]), allowed=(202, 500)))
    return out


async def token_alg_none(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    claims = t.claims()
    tokens = [("none", unsigned_token(claims, "none", t.kid)), ("None", unsigned_token(claims, "None", t.kid)),
              ("NONE_with_sig", unsigned_token(claims, "NONE", t.kid) + "c2ln"),
              ("rs256_no_signature", t.token().rsplit(".", 1)[0] + ".")]
    return [await post(s, t, n, t.body([t.item()], [tok])) for n, tok in _first(tokens, quick)]


async def token_hs256_public_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    public = t.signing_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public).encode()
    secrets = [("pem", pem), ("der", der), ("jwk_json", jwk), ("empty", b"")]
    return [await post(s, t, n, t.body([t.item()], [hs256_token(t.claims(), key, t.kid)]))
            for n, key in _first(secrets, quick)]


async def token_wrong_claims(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Signed with Entra's real key, so only the claims are wrong (a token Entra issued to someone else)."""
    other = str(uuid.uuid4())
    cases = [
        ("aud_other_app", {"aud": other}), ("aud_missing", {"aud": MISSING}), ("aud_list_other", {"aud": [other]}),
        ("iss_other_tenant", {"iss": f"https://login.microsoftonline.com/{other}/v2.0"}),
        ("iss_other_authority", {"iss": f"https://evil.example/{t.tenant_id}/v2.0"}),
        ("iss_missing", {"iss": MISSING}), ("tid_other", {"tid": other}),
        ("azp_other", {"azp": other}), ("azp_missing", {"azp": MISSING}),
        ("v1_without_appid", {"ver": "1.0", "iss": f"https://sts.windows.net/{t.tenant_id}/"}),
        ("v1_other_appid", {"ver": "1.0", "iss": f"https://sts.windows.net/{t.tenant_id}/", "appid": other}),
        ("ver_missing", {"ver": MISSING}), ("ver_3", {"ver": "3.0"}),
    ]
    return [await post(s, t, n, t.body([t.item()], [t.token(**c)])) for n, c in _first(cases, quick)]


async def token_expired(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    now = int(time.time())
    cases = [("expired", {"exp": now - 1}), ("expired_long_ago", {"exp": now - 86_400 * 30}),
             ("not_yet_valid", {"nbf": now + 86_400}), ("exp_missing", {"exp": MISSING}),
             ("exp_string", {"exp": str(now + 3600)}), ("exp_bool", {"exp": True}), ("exp_null", {"exp": None}),
             ("nbf_string", {"nbf": "0"})]
    return [await post(s, t, n, t.body([t.item()], [t.token(**c)])) for n, c in _first(cases, quick)]


async def token_missing(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Rich items without usable validationTokens."""
    cases: list[tuple[str, Any]] = [
        ("absent", None), ("null", [None]), ("empty_list", []), ("empty_string", [""]), ("string_not_list", "tok"),
        ("garbage", ["not.a.jwt"]), ("number", [123]), ("huge", ["eyJ" + "A" * 40_000]),
        ("too_many", [t.token()] * 17), ("three_dots", ["a.b.c.d"]),
    ]
    out = []
    for name, tokens in _first(cases, quick):
        if name == "null":
            body = json.dumps({"value": [t.item()], "validationTokens": None}).encode()
        else:
            body = t.body([t.item()], tokens)
        out.append(await post(s, t, name, body))
    return out


async def token_mixed(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    cases = [("good_then_forged", [t.token(), t.token(key=t.evil_key, kid=t.kid)]),
             ("forged_then_good", [unsigned_token(t.claims()), t.token()]),
             ("good_then_expired", [t.token(), t.token(exp=int(time.time()) - 10)])]
    return [await post(s, t, n, t.body([t.item()], toks)) for n, toks in _first(cases, quick)]


def _enc(t: Target) -> dict[str, str]:
    return t.encrypt(t.message())


async def encrypted_truncated(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def cut(field: str, how: Callable[[str], str]) -> dict[str, str]:
        enc = _enc(t)
        enc[field] = how(enc[field])
        return enc

    def drop_block(value: str) -> str:
        return base64.b64encode(base64.b64decode(value)[:-16]).decode()

    cases = [("data_half", cut("data", lambda v: v[: len(v) // 2])),
             ("data_last_block_removed", cut("data", drop_block)),
             ("data_one_byte", cut("data", lambda v: base64.b64encode(base64.b64decode(v)[:1]).decode())),
             ("data_empty", cut("data", lambda v: "")),
             ("datakey_half", cut("dataKey", lambda v: v[: len(v) // 2])),
             ("datakey_empty", cut("dataKey", lambda v: ""))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in _first(cases, quick)]


async def encrypted_bad_hmac(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def with_sig(value: Any) -> dict[str, Any]:
        enc: dict[str, Any] = _enc(t)
        if value is MISSING:
            enc.pop("dataSignature")
        else:
            enc["dataSignature"] = value(enc) if callable(value) else value
        return enc

    def flipped(enc: dict[str, str]) -> str:
        raw = bytearray(base64.b64decode(enc["dataSignature"]))
        raw[0] ^= 1
        return base64.b64encode(bytes(raw)).decode()

    def data_flipped(enc: dict[str, Any]) -> str:
        raw = bytearray(base64.b64decode(enc["data"]))
        raw[-1] ^= 1
        enc["data"] = base64.b64encode(bytes(raw)).decode()
        return enc["dataSignature"]

    cases = [("signature_bit_flipped", with_sig(flipped)), ("signature_missing", with_sig(MISSING)),
             ("signature_empty", with_sig("")), ("signature_short", with_sig(base64.b64encode(b"x" * 8).decode())),
             ("data_bit_flipped", with_sig(data_flipped)), ("signature_null", with_sig(None))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in _first(cases, quick)]


async def encrypted_swapped_key(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    a, b = _enc(t), _enc(t)
    swapped = {**a, "dataKey": b["dataKey"]}
    both = {**a, "dataKey": b["dataKey"], "dataSignature": b["dataSignature"]}
    data_only = {**a, "data": b["data"]}
    cases = [("datakey_of_another", swapped), ("datakey_and_signature_of_another", both),
             ("data_of_another", data_only)]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in _first(cases, quick)]


async def encrypted_other_cert(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Content for another key, or naming no key of ours. (Content that names our certificate by
    thumbprint or id and is encrypted for it is genuine: anyone can encrypt for a public key.)"""
    def unknown_ids(enc: dict[str, str]) -> dict[str, str]:
        return {**enc, "encryptionCertificateId": "not-our-certificate", "encryptionCertificateThumbprint": "00" * 20}

    def no_ids(enc: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in enc.items() if not k.startswith("encryptionCertificate")}

    cases = [
        ("encrypted_to_attacker_cert_with_our_id",
         lambda m: t.encrypt(m, certificate=t.evil_certificate, certificate_id=t.certificate_id)),
        ("encrypted_to_attacker_cert_our_thumbprint", lambda m: {**t.encrypt(m, certificate=t.evil_certificate),
                                                                "encryptionCertificateThumbprint": _thumb(t)}),
        ("unknown_certificate_id_and_thumbprint", lambda m: unknown_ids(t.encrypt(m))),
        ("no_certificate_ids", lambda m: no_ids(t.encrypt(m))),
    ]
    out = []
    for name, make in _first(cases, quick):
        message = t.message()  # a message of its own per case: a dedupe must not hide an acceptance
        out.append(await post(s, t, name, t.body([t.item(message=message, encrypted=make(message))])))
    return out


def _thumb(t: Target) -> str:
    return t.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Graph's thumbprint is SHA-1


async def encrypted_bad_base64(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    def bad(field: str, value: Any) -> dict[str, Any]:
        return {**_enc(t), field: value}

    cases = [("data_not_base64", bad("data", "!!!not base64!!!")), ("datakey_unicode", bad("dataKey", "ключ€")),
             ("signature_whitespace", bad("dataSignature", " \t\n ")), ("data_number", bad("data", 12345)),
             ("data_url_safe_alphabet", bad("data", _enc(t)["data"].replace("+", "-").replace("/", "_")))]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in _first(cases, quick)]


async def decrypts_to_junk(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Genuine crypto, token and clientState; the plaintext is not a usable chatMessage."""
    def enc(payload: Any) -> dict[str, str]:
        return t.encrypt(payload if isinstance(payload, bytes) else json.dumps(payload).encode())

    marker = f"atk-pt-{uuid.uuid4().hex}"
    t.markers.append(marker)
    cases: list[tuple[str, Any]] = [
        ("not_json", enc(marker.encode())), ("json_list", enc([marker])), ("json_string", enc(marker)),
        ("not_utf8", enc(b"\xff\xfe" + marker.encode())), ("empty", enc(b"")),
        ("from_missing", enc(t.message(**{"from": None}))), ("from_string", enc(t.message(**{"from": marker}))),
        ("sender_is_the_agent", enc(t.message(**{"from": {"user": {"id": t.agent_user_id}}}))),
        ("system_message", enc(t.message(messageType="systemEventMessage"))),
        ("deleted", enc(t.message(deletedDateTime="2026-02-02T17:56:05Z"))),
        ("created_not_a_date", enc(t.message(createdDateTime=marker))),
        ("id_number", enc(t.message(id=12345678))), ("body_list", enc(t.message(body=[marker]))),
        ("chat_id_object", enc(t.message(chatId={"x": marker}))),
        ("sender_id_object", enc(t.message(**{"from": {"user": {"id": {"x": 1}}}}))),
    ]
    return [await post(s, t, n, t.body([t.item(encrypted=e)])) for n, e in _first(cases, quick)]


async def change_type_odd(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Genuine but not a new message, or both a change and a lifecycle event."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("updated", t.item(change_type="updated")), ("deleted", t.item(change_type="deleted")),
        ("unknown_future_value", t.item(change_type="unknownFutureValue")),
        ("both_change_and_lifecycle", {**t.item(), "lifecycleEvent": "missed"}),
        ("neither", {k: v for k, v in t.item().items() if k != "changeType"}),
        ("resource_missing", {k: v for k, v in t.item(encrypted=None).items() if k not in ("resource", "resourceData")}),
    ]
    return [await post(s, t, n, t.body([item])) for n, item in _first(cases, quick)]


async def _churn(t: Target) -> tuple[dict[str, int], set[str]]:
    await anyio.sleep(0)
    requests = t.graph_requests()
    keys = ("POST /subscriptions", "PATCH /subscriptions/{sub_id}", "DELETE /subscriptions/{sub_id}",
            "POST /subscriptions/{sub_id}/reauthorize", "GET /me/mailFolders/inbox/messages/delta", "GET /me/chats")
    return {k: requests.get(k, 0) for k in keys}, t.subscription_ids()


async def lifecycle_wrong_client_state(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Forged lifecycle events must not make the runtime touch its subscriptions or resync."""
    before = await _churn(t)
    out = []
    events = ["subscriptionRemoved", "missed", "reauthorizationRequired"]
    for event in _first(events, quick):
        for name, cs in (("wrong", "not-the-client-state"), ("missing", None)):
            item = t.item(lifecycle=event, subscription=t.mail_sub if event == "missed" else t.teams_sub,
                          client_state=cs)
            if cs is None:
                item.pop("clientState", None)
            out.append(await post(s, t, f"{event}_{name}", json.dumps({"value": [item]}).encode(), path="/lifecycle"))
    await anyio.sleep(1.5)  # the manager reacts within milliseconds; give it time to misbehave
    after = await _churn(t)
    if after != before:
        out[0].problem = f"leak: forged lifecycle event acted on ({before[0]} -> {after[0]})"
    return out


async def lifecycle_forged_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """The right clientState, but the tokens sent with it fail: the event is suspicious, ignored."""
    before = await _churn(t)
    out = []
    for event in _first(["subscriptionRemoved", "reauthorizationRequired", "missed"], quick):
        sub = t.mail_sub if event == "missed" else t.teams_sub
        body = t.body([t.item(lifecycle=event, subscription=sub)], [t.token(key=t.evil_key, kid=t.kid)])
        out.append(await post(s, t, event, body, path="/lifecycle"))
    await anyio.sleep(1.5)
    after = await _churn(t)
    if after != before:
        out[0].problem = f"leak: lifecycle event with a forged token acted on ({before[0]} -> {after[0]})"
    return out


async def change_on_lifecycle_url(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    body, _ = t.valid()
    return [await post(s, t, "genuine_change_on_lifecycle_url", body, path="/lifecycle")]


async def handshake_giant_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    sizes = [1025, 4096, 7000, 16_384, 100_000]
    out = []
    for size in _first(sizes, quick):
        out.append(await post(s, t, f"token_{size}_chars", query="validationToken=" + "A" * size,
                              content_type="text/plain; charset=utf-8", allowed=(400, 414, 431)))
    return out


async def handshake_malformed_token(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    cases = [("bad_percent", "validationToken=%ZZabc", (200, 400)), ("not_utf8", "validationToken=%FF%FE", (400,)),
             ("nul", "validationToken=a%00b", (400,)), ("crlf_header_injection", "validationToken=x%0D%0ASet-Cookie:%20a=b",
                                                        (400,)),
             ("empty", "validationToken=", (400,)), ("no_equals", "validationToken", (400,)),
             ("bidi_override", "validationToken=%E2%80%AEabc", (200, 400)),
             ("repeated", "validationToken=first&validationToken=second", (200,))]
    out = []
    for name, query, allowed in _first(cases, quick):
        o = await post(s, t, name, query=query, content_type="text/plain; charset=utf-8", allowed=allowed)
        if name == "crlf_header_injection" and b"Set-Cookie" in o.headers.encode():
            o.problem = "leak: header injected through the echoed token"
        out.append(o)
    return out


async def handshake_with_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A handshake carrying a genuine notification: the token is echoed, the body never read."""
    body, key = t.valid()
    o = await post(s, t, "genuine_notification_in_handshake", body, query="validationToken=hello",
                   allowed=(200,))
    if o.status == 200 and o.body != b"hello":
        o.problem = "crash: handshake echoed something else"
    o.note = f"not stored: {key}"
    out = [o]
    if not quick:
        big = await post(s, t, "2MiB_body_in_handshake", b"x" * (2 * 1024 * 1024), query="validationToken=hello",
                         content_type="text/plain", allowed=(200,))
        out.append(big)
    return out


async def handshake_markup(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    o = await post(s, t, "script_token", query="validationToken=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                   content_type="text/plain", allowed=(200,))
    headers = o.headers.lower()
    if o.status == 200 and ("text/plain" not in headers or "nosniff" not in headers):
        o.problem = "leak: echoed markup without text/plain and nosniff"
    return [o]


async def content_type_wrong(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A genuine notification under a content type Graph never sends: dropped unread."""
    types = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None,
             "application/jsonx", "text/html", "application/xml"]
    out = []
    for ctype in _first(types, quick):
        body, _ = t.valid()
        out.append(await post(s, t, f"content_type_{ctype}", body, content_type=ctype))
    return out


async def oversize_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    big = b'{"value":[' + b" " * (2 * 1024 * 1024) + b"]}"

    async def chunked() -> Any:
        for i in range(0, len(big), 65_536):
            yield big[i:i + 65_536]

    out = [await post(s, t, "2MiB_with_length", big)]
    if not quick:
        out.append(await post(s, t, "2MiB_chunked", chunked()))  # type: ignore[arg-type]
        huge = _http("POST", "/notifications", b'{"value":[]}', content_length=False)
        huge = huge.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000000000000\r\n\r\n", 1)
        out.append(await raw(t, "content_length_1TB", [huge], wait=8))
    return out


async def invalid_utf8(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    good = t.body([t.item()])
    cases = [("lone_ff", b'{"value":[\xff]}'), ("inside_string", good.replace(b'"created"', b'"cr\xc3\x28ated"')),
             ("overlong_slash", b'{"value":[{"subscriptionId":"\xc0\xaf"}]}'),
             ("surrogate_escape", good.replace(b'"created"', b'"\\ud800"')),
             ("utf16", good.decode().encode("utf-16")), ("bom", b"\xef\xbb\xbf" + good)]
    return [await post(s, t, n, b) for n, b in _first(cases, quick)]


async def deep_nesting(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    item = t.item()
    deep_list = b"[" * 200_000 + b"]" * 200_000
    deep_obj = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    in_item = json.dumps({"value": [{**item, "resourceData": "@"}]}).encode().replace(b'"@"', deep_obj)
    in_extra = t.body([t.item()])[:-1] + b',"extra":' + deep_list + b"}"
    cases = [("top_level_arrays", b'{"value":' + deep_list + b"}"), ("in_resource_data", in_item),
             ("in_an_extra_field", in_extra), ("objects_only", deep_obj)]
    return [await post(s, t, n, b) for n, b in _first(cases, quick)]


async def huge_arrays(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Big batches: parsing and checking stay bounded by the body limit and the 8 s deadline."""
    cases: list[tuple[str, bytes]] = [("300k_empty_objects", b'{"value":[' + b",".join([b"{}"] * 300_000) + b"]}")]
    if not quick:
        # The batches below stay under the 1 MiB body limit, so they are parsed and checked item by item.
        forged = json.dumps(t.item(client_state="x", encrypted=None))
        n = 1_000_000 // (len(forged) + 1)
        cases.append((f"{n}_forged_items", ('{"value":[' + ",".join([forged] * n) + "]}").encode()))
        cases.append(("200k_tokens", json.dumps({"value": [t.item()], "validationTokens": ["a"] * 200_000}).encode()))
        # Well-formed lengths, so each item gets as far as an RSA decryption of its dataKey (which fails).
        junk = {"data": base64.b64encode(b"A" * 32).decode(), "dataKey": base64.b64encode(b"k" * 256).decode(),
                "dataSignature": base64.b64encode(b"s" * 32).decode(), "encryptionCertificateId": t.certificate_id}
        rich = json.dumps(t.item(encrypted=junk))
        n = 980_000 // (len(rich) + 1)
        cases.append((f"{n}_items_costing_a_decryption_each",
                      ('{"value":[' + ",".join([rich] * n) + f'],"validationTokens":["{t.token()}"]}}').encode()))
    return [await post(s, t, n, b) for n, b in cases]


async def json_edge(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    forged = t.body([t.item(client_state="x")])
    cases = [("empty_body", b""), ("whitespace", b"   \n"), ("array", b"[]"), ("null", b"null"), ("string", b'"x"'),
             ("empty_object", b"{}"), ("value_object", b'{"value":{}}'), ("value_null", b'{"value":null}'),
             ("nan", b'{"value":NaN}'), ("infinity", b'{"value":[{"subscriptionId":Infinity}]}'),
             ("huge_number", b'{"value":[{"subscriptionId":1' + b"0" * 100_000 + b"}]}"),
             ("duplicate_value_keys", b'{"value":[],' + forged[1:]),
             ("trailing_garbage", forged + b"garbage"), ("two_documents", forged + forged),
             ("comments", b'{"value":[] /* c */}'), ("single_quotes", b"{'value':[]}"),
             ("date_nonsense", forged.replace(GENUINE_EXPIRY.encode(), b"9999-99-99T99:99:99Z")),
             ("date_year_0", forged.replace(GENUINE_EXPIRY.encode(), b"0000-01-01T00:00:00Z"))]
    return [await post(s, t, n, b) for n, b in _first(cases, quick)]


def _rss_kb(pid: int, field: str = "VmHWM") -> int:
    try:
        for line in open(f"/proc/{pid}/status"):  # noqa: SIM115 - a tiny read
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def compression_bomb(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Content-Encoding bombs: aiohttp inflates request bodies; the limit counts inflated bytes."""
    size = 64 * 1024 * 1024 if quick else 1024 * 1024 * 1024
    payload = b'{"value":[' + b" " * size + b"]}"
    cases = [("gzip", gzip.compress(payload, 9), "gzip")]
    if not quick:
        cases.append(("deflate", zlib.compress(payload, 9), "deflate"))
        cases.append(("gzip_of_gzip", gzip.compress(gzip.compress(payload, 9), 9), "gzip"))
    out = []
    for name, body, encoding in cases:
        before = _rss_kb(t.pid)
        o = await post(s, t, f"{name}_{size >> 20}MiB_in_{len(body) >> 10}KiB", body,
                       headers={"Content-Encoding": encoding})
        grew = (_rss_kb(t.pid) - before) // 1024
        o.note = f"peak RSS +{grew} MiB"
        if grew > 256:
            o.problem = f"unbounded: peak RSS grew {grew} MiB"
        out.append(o)
    del payload
    return out


async def http_protocol(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """What no HTTP client sends: smuggling shapes, broken framing, oversized heads."""
    body = t.body([t.item(client_state="x")])
    te_cl = _http("POST", "/notifications", b"0\r\n\r\n", {"Content-Type": "application/json",
                                                            "Transfer-Encoding": "chunked"})
    cases: list[tuple[str, list[bytes], tuple[int, ...]]] = [
        ("cl_and_te", [te_cl], (400, 202)),
        ("bad_chunk_size", [_http("POST", "/notifications", b"zz\r\nabc\r\n0\r\n\r\n",
                                  {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                  content_length=False)], (400, 202)),
        ("negative_length", [_http("POST", "/notifications", b"", {"Content-Type": "application/json",
                                                                   "Content-Length": "-1"}, content_length=False)],
         (400,)),
        ("two_lengths", [_http("POST", "/notifications", body, {"Content-Type": "application/json",
                                                               "Content-Length": "5"})], (400, 202)),
        ("obs_fold", [_http("POST", "/notifications", body, {"Content-Type": "application/json\r\n x-fold: y"})],
         (400, 202)),
        ("header_100KiB", [_http("POST", "/notifications", body, {"Content-Type": "application/json",
                                                                  "X-Big": "a" * 100_000})], (400, 431)),
        ("1000_headers", [_http("POST", "/notifications", body,
                                {**{f"X-H{i}": "v" for i in range(1000)}, "Content-Type": "application/json"})],
         (400, 431, 202)),
        ("bad_request_line", [b"POST /notifications HTTP/9.9 extra\r\n\r\n"], (400, 505)),
        ("no_http_version", [b"GET /health\r\n\r\n"], (200, 400)),
        ("nul_in_path", [b"POST /notif\x00ications HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"], (400, 404)),
        ("pipelined_after_handshake", [_http("POST", "/notifications?validationToken=a", b"") + _http(
            "POST", "/notifications", body)], (200,)),
        ("absolute_uri", [_http("POST", "http://evil.example/notifications", body)], (202, 400, 404)),
    ]
    out = []
    for name, chunks, allowed in _first(cases, quick):
        out.append(await raw(t, name, chunks, allowed=allowed, wait=8))
    return out


async def slowloris_body(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A body that stops, or trickles a byte every 200 ms: answered within the read timeout (5 s)."""
    host, _, port = t.base.removeprefix("http://").partition(":")
    head = _http("POST", "/notifications", b"", content_length=False).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 2000\r\n\r\n", 1)
    out = []
    for name, trickle in _first([("body_stops", False), ("body_one_byte_per_200ms", True)], quick):
        o = Outcome(name)
        began = time.monotonic()
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(head + b'{"value":[')
            data = b""
            with anyio.move_on_after(30):
                while not data:
                    with anyio.move_on_after(0.2):
                        data = await stream.receive()
                    if trickle and not data:
                        await stream.send(b" ")
        o.seconds = time.monotonic() - began
        o.status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
        o.note = f"answered after {o.seconds:.1f} s" if data else "no answer in 30 s"
        if o.seconds > 10:
            o.problem = f"unbounded: {o.note}"
        out.append(o)
    return out


async def slowloris_headers(s: aiohttp.ClientSession, t: Target, quick: bool, *, bound: float = 45.0,
                            connections: int = 20) -> list[Outcome]:
    """Connections that never finish their request head (or never send one) must be closed by the server.

    Without a bound each one holds a socket and a file descriptor for as long as
    the attacker likes, and enough of them stop Graph's deliveries.
    """
    host, _, port = t.base.removeprefix("http://").partition(":")
    results: list[Outcome] = []

    async def hold(n: int, idle: bool) -> None:
        began = time.monotonic()
        o = Outcome(f"{'idle' if idle else 'trickling_headers'}_{n}", allowed=frozenset({None}))  # type: ignore[arg-type]
        try:
            async with await anyio.connect_tcp(host, int(port)) as stream:
                with anyio.move_on_after(bound) as scope:
                    if not idle:
                        await stream.send(b"POST /notifications HTTP/1.1\r\nHost: x\r\n")
                    while True:
                        if idle:
                            await stream.receive()  # the server closing ends this with EndOfStream
                        else:
                            await anyio.sleep(1.0)
                            await stream.send(b"X-Slow: 1\r\n")
                if scope.cancelled_caught:
                    o.problem = f"unbounded: still open after {bound:.0f} s"
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass
        o.seconds = time.monotonic() - began
        o.note = f"closed by the server after {o.seconds:.1f} s" if not o.problem else o.problem
        results.append(o)

    async with anyio.create_task_group() as tg:
        for n in range(1 if quick else connections):
            tg.start_soon(hold, n, n % 2 == 1)
    return sorted(results, key=lambda o: o.case)


async def methods_and_paths(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    forged = t.body([t.item(client_state="x")])
    cases: list[tuple[str, str, str, tuple[int, ...]]] = [
        ("get", "GET", "/notifications", (405,)), ("put", "PUT", "/notifications", (405,)),
        ("delete", "DELETE", "/lifecycle", (405,)), ("options", "OPTIONS", "/notifications", (405, 200)),
        ("trace", "TRACE", "/notifications", (405,)), ("trailing_slash", "POST", "/notifications/", (404,)),
        ("other_path", "POST", "/admin", (404,)), ("encoded_path", "POST", "/%6Eotifications", (202, 404)),
        ("dot_segments", "POST", "/x/../notifications", (202, 404)), ("post_health", "POST", "/health", (405,)),
    ]
    out = []
    for name, method, path, allowed in _first(cases, quick):
        out.append(await post(s, t, name, forged, path=path, method=method, allowed=allowed))
    return out


async def fetch_id_injection(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Basic mail items (no encrypted content) with the right clientState name a message to fetch;
    ids shaped like paths or queries must not steer the runtime's Graph request elsewhere."""
    ids = ["../../users", "..", ".", "x?$select=id", "..%2F..%2Fusers", "x#frag", "a" * 5000,
           "https://evil.example/x", "../../../subscriptions", "x/../../../me/chats"]
    before = t.graph_requests()
    out = []
    for mid in _first(ids, quick):
        item = {"subscriptionId": t.mail_sub, "subscriptionExpirationDateTime": GENUINE_EXPIRY,
                "tenantId": t.tenant_id, "clientState": t.client_state, "changeType": "created",
                "resource": f"Users/{t.agent_user_id}/Messages/{mid}",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": mid}}
        out.append(await post(s, t, f"id_{mid[:24]}", json.dumps({"value": [item]}).encode()))
    await anyio.sleep(2.0)  # the fetch worker runs after the 202
    after = t.graph_requests()
    strays = {k: after.get(k, 0) - before.get(k, 0) for k in after
              if after.get(k, 0) != before.get(k, 0) and not k.startswith("GET /me/messages/")
              and "delta" not in k}
    if strays:
        out[0].problem = f"leak: message ids reached other Graph routes {strays}"
    out[0].note = "graph requests caused: " + json.dumps(
        {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)})
    return out


async def flood(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """Many forged POSTs at once; afterwards a genuine notification is still stored at once."""
    n = 200 if quick else 3000
    bodies = [t.body([t.item(client_state="x")]), b"{}", b"[" * 1000, t.body([t.item()], [unsigned_token(t.claims())])]
    statuses: dict[int | None, int] = {}
    slowest = 0.0
    limit = anyio.Semaphore(64)

    async def one(i: int) -> None:
        nonlocal slowest
        async with limit:
            o = await post(s, t, "flood", bodies[i % len(bodies)])
            statuses[o.status] = statuses.get(o.status, 0) + 1
            slowest = max(slowest, o.seconds)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    summary = Outcome(f"{n}_forged_posts", status=202 if set(statuses) == {202} else max(
        (k for k in statuses if k is not None), default=None), note=f"statuses {statuses}, slowest {slowest:.2f} s")
    if None in statuses:
        summary.error = f"{statuses[None]} connections failed"
    body, key = t.valid()
    alive = await post(s, t, "genuine_after_flood", body)
    alive.note = key
    return [summary, alive]


async def captured_token_forgery(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """A limit of Graph's protocol, shown, not a check the runtime can make.

    validationTokens are not bound to the payload, and anyone can encrypt for the
    agent's public certificate. Whoever can read genuine notification POSTs (the
    clientState and a token live for an hour) can therefore forge a message from
    anyone, the sponsor included. Only TLS to the tunnel and the secrecy of the
    state directory stand in the way.
    """
    message = t.message(**{"from": {"user": {"id": t.sender["id"], "displayName": "forged", "tenantId": t.tenant_id}}})
    o = await post(s, t, "attacker_content_under_a_captured_token", t.body([t.item(message=message)]))
    o.note = t.key_of(message)
    return [o]


KINDS: list[Kind] = [
    Kind("client_state_wrong", "genuine item and token, wrong/missing/odd clientState", client_state),
    Kind("unknown_subscription", "subscriptionId not ours (random, path-like, huge, empty)", unknown_subscription),
    Kind("wrong_tenant", "tenantId of another tenant", wrong_tenant),
    Kind("replay_same_notification", "one genuine notification posted 2x in a row and 5x at once", replay_same,
         events=1),
    Kind("replay_old_notification", "a stored notification replayed later, then with its expired token",
         replay_old, events=1),
    Kind("token_other_key", "validation token signed by another key under Entra's kid", token_other_key),
    Kind("token_unknown_kid", "token whose kid is not in the JWKS (500 by design: Graph retries)",
         token_unknown_kid),
    Kind("token_alg_none", "unsigned tokens (alg none, NONE, stripped signature)", token_alg_none),
    Kind("token_hs256_public_key", "HS256 keyed with Entra's public key (key confusion)", token_hs256_public_key),
    Kind("token_wrong_claims", "Entra-signed token with wrong aud/iss/tid/azp/appid/ver", token_wrong_claims),
    Kind("token_expired", "expired, not yet valid, or odd exp", token_expired),
    Kind("token_missing", "rich items without usable validationTokens", token_missing),
    Kind("token_mixed", "a genuine token next to a bad one", token_mixed),
    Kind("encrypted_truncated", "encryptedContent data or dataKey truncated", encrypted_truncated),
    Kind("encrypted_bad_hmac", "dataSignature wrong, missing or short; data altered", encrypted_bad_hmac),
    Kind("encrypted_swapped_key", "dataKey/data of another notification", encrypted_swapped_key),
    Kind("encrypted_other_cert", "encrypted for another certificate, unknown cert ids", encrypted_other_cert),
    Kind("encrypted_bad_base64", "fields that are not base64", encrypted_bad_base64),
    Kind("decrypts_to_junk", "genuine crypto around a plaintext that is no usable chatMessage", decrypts_to_junk),
    Kind("change_type_odd", "updated/deleted/unknown changes, change+lifecycle, no resource", change_type_odd),
    Kind("lifecycle_wrong_client_state", "subscriptionRemoved/missed/reauthorizationRequired, forged",
         lifecycle_wrong_client_state),
    Kind("lifecycle_forged_token", "lifecycle events with the clientState but a forged token",
         lifecycle_forged_token),
    Kind("change_on_lifecycle_url", "a genuine change notification sent to the lifecycle URL",
         change_on_lifecycle_url),
    Kind("handshake_giant_token", "validationToken of 1 KB to 100 KB", handshake_giant_token),
    Kind("handshake_malformed_token", "bad escapes, not UTF-8, NUL, CRLF injection, empty, repeated",
         handshake_malformed_token),
    Kind("handshake_with_body", "a handshake carrying a genuine notification or 2 MiB", handshake_with_body),
    Kind("handshake_markup", "a token that is HTML", handshake_markup),
    Kind("content_type_wrong", "genuine notification under other content types", content_type_wrong),
    Kind("oversize_body", "2 MiB bodies (with length, chunked), a 1 TB Content-Length", oversize_body),
    Kind("invalid_utf8", "bodies that are not UTF-8 JSON", invalid_utf8),
    Kind("deep_nesting", "200,000-deep arrays, 50,000-deep objects", deep_nesting),
    Kind("huge_arrays", "300k items, ~1,500 forged items, 200k tokens, ~1,400 rich items each costing an RSA decryption",
         huge_arrays),
    Kind("json_edge", "not a collection, NaN, huge numbers, duplicate keys, trailing data, odd dates", json_edge),
    Kind("compression_bomb", "gzip/deflate bodies inflating to 1 GiB", compression_bomb),
    Kind("http_protocol", "smuggling shapes, bad chunks, huge heads, pipelining", http_protocol),
    Kind("slowloris_body", "bodies that stop or trickle", slowloris_body),
    Kind("slowloris_headers", "connections that never finish their head, or stay idle", slowloris_headers),
    Kind("methods_and_paths", "other methods and paths", methods_and_paths),
    Kind("fetch_id_injection", "basic mail items whose ids look like paths or queries", fetch_id_injection),
    Kind("flood", "thousands of forged POSTs at once, then a genuine one", flood, events=1),
    Kind("captured_token_forgery", "attacker content under a captured clientState and token", captured_token_forgery,
         events=1, limit=True),
]
