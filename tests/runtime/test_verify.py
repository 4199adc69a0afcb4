"""Trust decisions: clientState, notification items and validationTokens against a real JWKS endpoint.

The JWKS is served by a loopback aiohttp server started in each test (a test
peer standing in for login.microsoftonline.com); tokens are minted with PyJWT.
Rate limits run on a fake monotonic clock, so nothing here depends on timing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from agentseat.config import GRAPH_CHANGE_TRACKING_APP_ID
from agentseat.graph.models import ChangeNotification, ChangeNotificationCollection
from agentseat.runtime.verify import (
    JwksCache,
    VerificationError,
    client_state_matches,
    validate_tokens,
    verify_notification_item,
)

TENANT = "9f4ebab6-520d-49c0-85cc-7b25c78d4a93"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
AUDIENCE = "925bff9f-f6e2-4a69-b858-f71ea2b9b6d0"
JWKS_PATH = "/common/discovery/v2.0/keys"


# --- peers and helpers ---------------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JwksPeer:
    """What login.microsoftonline.com's keys endpoint does, plus a request counter."""

    def __init__(self) -> None:
        self.keys: dict[str, RSAPrivateKey] = {}
        self.hits = 0
        self.status = 200
        self.gate: anyio.Event | None = None
        self.first_request = anyio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.first_request.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        keys: list[dict[str, Any]] = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        # Entries the cache must skip without failing the whole document.
        keys += [{"kty": "EC", "kid": "ec-key", "crv": "P-256", "x": "AA", "y": "AA"}, {"kid": "broken"}, "junk"]
        return web.json_response({"keys": keys})


@asynccontextmanager
async def serve(peer: JwksPeer, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get(JWKS_PATH, peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}{JWKS_PATH}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def rsa_keys() -> dict[str, RSAPrivateKey]:
    return {name: rsa.generate_private_key(public_exponent=65537, key_size=2048) for name in ("k1", "k2", "evil")}


@pytest.fixture
def peer(rsa_keys: dict[str, RSAPrivateKey]) -> JwksPeer:
    p = JwksPeer()
    p.keys["k1"] = rsa_keys["k1"]
    return p


@pytest.fixture
async def jwks_url(peer: JwksPeer) -> AsyncIterator[str]:
    async with serve(peer) as url:
        yield url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jwks(jwks_url: str, session: aiohttp.ClientSession, clock: FakeClock) -> JwksCache:
    return JwksCache(jwks_url, session, clock=clock)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "aud": AUDIENCE,
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "azp": GRAPH_CHANGE_TRACKING_APP_ID,
        "azpacr": "2",
        "tid": TENANT,
        "ver": "2.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(key: RSAPrivateKey, kid: str | None = "k1", algorithm: str = "RS256", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(**overrides), key, algorithm=algorithm, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A token PyJWT refuses to make (alg none, HS256 keyed with our public key)."""
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64url(signature)}"


async def validate(tokens: Any, jwks: JwksCache, **kwargs: Any) -> None:
    options: dict[str, Any] = {
        "audiences": {AUDIENCE},
        "tenant_ids": {TENANT},
        "caller_app_id": GRAPH_CHANGE_TRACKING_APP_ID,
    }
    options.update(kwargs)
    await validate_tokens(tokens, jwks=jwks, **options)


async def reason_of(tokens: Any, jwks: JwksCache, **kwargs: Any) -> str:
    with pytest.raises(VerificationError) as caught:
        await validate(tokens, jwks, **kwargs)
    return caught.value.reason


# --- accepted tokens ------------------------------------------------------------------


async def test_valid_v2_token_is_accepted(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    await validate([mint(rsa_keys["k1"])], jwks)


async def test_valid_v1_token_is_accepted(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    token = mint(
        rsa_keys["k1"],
        iss=f"https://sts.windows.net/{TENANT}/",
        ver="1.0",
        azp=None,
        appid=GRAPH_CHANGE_TRACKING_APP_ID,
    )
    await validate([token], jwks)


async def test_token_for_any_configured_audience_is_accepted(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]
) -> None:
    await validate([mint(rsa_keys["k1"], aud="other-app")], jwks, audiences={AUDIENCE, "other-app"})


async def test_uppercase_configured_tenant_still_matches(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    await validate([mint(rsa_keys["k1"])], jwks, tenant_ids={TENANT.upper()})


async def test_nbf_slightly_in_the_future_is_tolerated(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    await validate([mint(rsa_keys["k1"], nbf=int(time.time()) + 240)], jwks)


# --- rejected tokens ------------------------------------------------------------------


async def test_missing_or_empty_token_list_is_rejected(jwks: JwksCache) -> None:
    assert await reason_of(None, jwks) == "missing_tokens"
    assert await reason_of([], jwks) == "missing_tokens"


async def test_garbage_token_is_rejected(jwks: JwksCache) -> None:
    assert await reason_of(["not.a.jwt"], jwks) == "malformed_token"
    assert await reason_of([""], jwks) == "malformed_token"
    assert await reason_of("eyJhbGciOiJSUzI1NiJ9.e30.sig", jwks) == "malformed_token"  # a str, not a list


async def test_a_header_that_is_not_strict_base64url_json_is_malformed_before_any_key_lookup(
        jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    good = mint(rsa_keys["k1"])
    header, payload, signature = good.split(".")
    for token in (f"{header}!!.{payload}.{signature}",  # not the base64url alphabet
                  f"{header}.{payload}.{signature}.extra",  # a fourth segment
                  f"WzFd.{payload}.{signature}",  # JSON, but a list ([1]), not an object
                  f"{header[:-3]}.{payload}.{signature}"):  # cut: no longer JSON
        assert await reason_of([token], jwks) == "malformed_token", token
    await validate([good], jwks)  # the same key's untouched token still verifies


async def test_unsigned_alg_none_token_is_rejected(jwks: JwksCache) -> None:
    token = handmade({"alg": "none", "kid": "k1", "typ": "JWT"}, claims())
    assert await reason_of([token], jwks) == "bad_alg"


async def test_hs256_token_keyed_with_the_public_key_is_rejected(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]
) -> None:
    # Key confusion: an HMAC "signed" with the RSA public key an attacker can download.
    public_pem = rsa_keys["k1"].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = handmade(
        {"alg": "HS256", "kid": "k1", "typ": "JWT"},
        claims(),
        sign=lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    assert await reason_of([token], jwks) == "bad_alg"


async def test_token_with_other_rsa_algorithm_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], algorithm="RS512")], jwks) == "bad_alg"
    assert await reason_of([mint(rsa_keys["k1"], algorithm="PS256")], jwks) == "bad_alg"


async def test_token_without_kid_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], kid=None)], jwks) == "missing_kid"


async def test_token_signed_by_unknown_key_is_rejected(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer
) -> None:
    assert await reason_of([mint(rsa_keys["evil"], kid="evil")], jwks) == "unknown_kid"
    assert peer.hits == 1


async def test_token_with_forged_signature_under_a_known_kid_is_rejected(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]
) -> None:
    assert await reason_of([mint(rsa_keys["evil"], kid="k1")], jwks) == "bad_signature"


async def test_expired_token_is_rejected_without_leeway(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    token = mint(rsa_keys["k1"], iat=1_000, nbf=1_000, exp=2_000)
    assert await reason_of([token], jwks, now=2_000.0) == "expired"
    assert await reason_of([token], jwks, now=2_001.0) == "expired"
    await validate([token], jwks, now=1_999.0)


async def test_token_without_exp_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    token = jwt.encode({k: v for k, v in claims().items() if k != "exp"}, rsa_keys["k1"], "RS256", {"kid": "k1"})
    assert await reason_of([token], jwks) == "missing_exp"


async def test_not_yet_valid_token_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], nbf=int(time.time()) + 400)], jwks) == "not_yet_valid"


async def test_token_for_another_audience_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], aud="some-other-app")], jwks) == "bad_audience"
    assert await reason_of([mint(rsa_keys["k1"], aud=None)], jwks) == "bad_audience"


async def test_token_from_another_tenant_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    token = mint(rsa_keys["k1"], iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0", tid=OTHER_TENANT)
    assert await reason_of([token], jwks) == "bad_issuer"


async def test_token_from_another_authority_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], iss=f"https://evil.example/{TENANT}/v2.0")], jwks) == "bad_issuer"
    # PyJWT will not mint a non-string iss, so sign one by hand.
    listed = handmade(
        {"alg": "RS256", "kid": "k1", "typ": "JWT"},
        claims(iss=[f"https://login.microsoftonline.com/{TENANT}/v2.0"]),
        sign=lambda data: rsa_keys["k1"].sign(data, asym.PKCS1v15(), hashes.SHA256()),
    )
    assert await reason_of([listed], jwks) == "bad_issuer"


async def test_token_whose_tid_contradicts_its_issuer_is_rejected(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]
) -> None:
    assert await reason_of([mint(rsa_keys["k1"], tid=OTHER_TENANT)], jwks) == "bad_tenant"


async def test_v2_token_from_another_caller_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    # `appid` is not the caller claim of a v2 token: it must not rescue a wrong `azp`.
    token = mint(rsa_keys["k1"], azp="attacker-app", appid=GRAPH_CHANGE_TRACKING_APP_ID)
    assert await reason_of([token], jwks) == "bad_caller"
    no_azp = mint(rsa_keys["k1"], azp=None, appid=GRAPH_CHANGE_TRACKING_APP_ID)
    assert await reason_of([no_azp], jwks) == "bad_caller"


async def test_v1_token_from_another_caller_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    token = mint(
        rsa_keys["k1"], iss=f"https://sts.windows.net/{TENANT}/", ver="1.0", azp=GRAPH_CHANGE_TRACKING_APP_ID,
        appid="attacker-app",
    )
    assert await reason_of([token], jwks) == "bad_caller"


async def test_token_without_version_is_rejected(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"], ver=None)], jwks) == "bad_version"


async def test_one_bad_token_fails_the_whole_post(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    good = mint(rsa_keys["k1"])
    assert await reason_of([good, mint(rsa_keys["k1"], aud="x")], jwks) == "bad_audience"


async def test_flood_of_tokens_is_rejected_unread(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer
) -> None:
    assert await reason_of([mint(rsa_keys["k1"])] * 17, jwks) == "too_many_tokens"
    assert peer.hits == 0


async def test_unconfigured_audience_rejects_everything(jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]) -> None:
    assert await reason_of([mint(rsa_keys["k1"])], jwks, audiences=set()) == "not_configured"


# --- key fetching: rotation, single flight, rate limit, TLS ---------------------------


async def test_rotated_signing_key_is_fetched_once(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer, clock: FakeClock
) -> None:
    await validate([mint(rsa_keys["k1"])], jwks)
    peer.keys = {"k2": rsa_keys["k2"]}
    clock.advance(61)
    await validate([mint(rsa_keys["k2"], kid="k2")], jwks)
    await validate([mint(rsa_keys["k2"], kid="k2", aud=AUDIENCE, azpacr="1")], jwks)
    assert peer.hits == 2


async def test_remembered_token_is_rejected_once_its_key_is_retired(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer, clock: FakeClock
) -> None:
    old = mint(rsa_keys["k1"])
    await validate([old], jwks)
    peer.keys = {"k2": rsa_keys["k2"]}
    clock.advance(61)
    await validate([mint(rsa_keys["k2"], kid="k2")], jwks)  # the cache learns that k1 is gone
    assert await reason_of([old], jwks) == "unknown_kid"


async def test_concurrent_cold_validations_share_one_jwks_fetch(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer
) -> None:
    peer.gate = anyio.Event()
    tokens = [mint(rsa_keys["k1"], uti=str(i)) for i in range(50)]
    accepted: list[int] = []

    async def one(i: int) -> None:
        await validate([tokens[i]], jwks)
        accepted.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
        # Hold the only response until every validation is waiting for keys.
        await peer.first_request.wait()
        await anyio.wait_all_tasks_blocked()
        peer.gate.set()
    assert peer.hits == 1
    assert sorted(accepted) == list(range(50))


async def test_unknown_kids_refetch_at_most_once_per_interval(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer, clock: FakeClock
) -> None:
    await validate([mint(rsa_keys["k1"])], jwks)
    clock.advance(61)
    for i in range(20):  # forged tokens, each naming a new kid
        assert await reason_of([mint(rsa_keys["evil"], kid=f"evil-{i}")], jwks) == "unknown_kid"
    assert peer.hits == 2
    # A genuine rotation inside the interval waits for it too.
    peer.keys["k2"] = rsa_keys["k2"]
    clock.advance(59)
    assert await reason_of([mint(rsa_keys["k2"], kid="k2")], jwks) == "unknown_kid"
    assert peer.hits == 2
    clock.advance(1)
    await validate([mint(rsa_keys["k2"], kid="k2")], jwks)
    assert peer.hits == 3


async def test_failed_fetch_is_retried_after_a_short_backoff(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer, clock: FakeClock
) -> None:
    peer.status = 503
    token = mint(rsa_keys["k1"])
    assert await reason_of([token], jwks) == "unknown_kid"
    assert await reason_of([token], jwks) == "unknown_kid"
    assert peer.hits == 1
    peer.status = 200
    clock.advance(5)
    await validate([token], jwks)
    assert peer.hits == 2


async def test_stale_keys_are_refreshed_and_kept_if_refresh_fails(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], peer: JwksPeer, clock: FakeClock
) -> None:
    await validate([mint(rsa_keys["k1"], uti="a")], jwks)
    clock.advance(86_400)
    peer.status = 500
    await validate([mint(rsa_keys["k1"], uti="b")], jwks)
    assert peer.hits == 2


def _tls_pair(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A private CA and a 127.0.0.1 server certificate: (server context, client context trusting the CA)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


async def test_jwks_over_tls_is_trusted_only_with_the_given_ca(
    peer: JwksPeer, session: aiohttp.ClientSession, rsa_keys: dict[str, RSAPrivateKey], tmp_path: Path
) -> None:
    server_tls, client_tls = _tls_pair(tmp_path)
    token = mint(rsa_keys["k1"])
    async with serve(peer, tls=server_tls) as url:
        assert await reason_of([token], JwksCache(url, session)) == "unknown_kid"
        await validate([token], JwksCache(url, session, ssl=client_tls))
    assert peer.hits == 1  # the untrusted handshake never reached the handler


# --- remembered tokens --------------------------------------------------------------


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts real RSA verifications by wrapping PyJWT's decode (behaviour unchanged)."""
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


async def test_repeated_token_is_verified_once(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], signature_checks: list[str]
) -> None:
    token = mint(rsa_keys["k1"])
    for _ in range(5):
        await validate([token], jwks)
    assert len(signature_checks) == 1


async def test_remembered_token_still_expires(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], signature_checks: list[str]
) -> None:
    token = mint(rsa_keys["k1"], iat=1_000, nbf=1_000, exp=2_000)
    await validate([token], jwks, now=1_500.0)
    assert await reason_of([token], jwks, now=2_000.0) == "expired"
    assert len(signature_checks) == 1


async def test_remembered_token_is_rechecked_against_the_callers_rules(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey]
) -> None:
    token = mint(rsa_keys["k1"])
    await validate([token], jwks)
    assert await reason_of([token], jwks, audiences={"someone-else"}) == "bad_audience"


async def test_rejected_token_is_not_remembered(
    jwks: JwksCache, rsa_keys: dict[str, RSAPrivateKey], signature_checks: list[str]
) -> None:
    token = mint(rsa_keys["k1"], aud="x")
    for _ in range(3):
        assert await reason_of([token], jwks) == "bad_audience"
    assert len(signature_checks) == 3


async def test_token_memory_is_bounded(
    jwks_url: str, session: aiohttp.ClientSession, rsa_keys: dict[str, RSAPrivateKey], signature_checks: list[str]
) -> None:
    cache = JwksCache(jwks_url, session, max_remembered_tokens=2)
    first, second, third = (mint(rsa_keys["k1"], uti=str(i)) for i in range(3))
    for token in (first, second, third, first):
        await validate([token], cache)
    assert signature_checks == [first, second, third, first]


# --- clientState and items ------------------------------------------------------------


def test_client_state_compares_exactly() -> None:
    assert client_state_matches("s3cret-✓", "s3cret-✓")
    assert not client_state_matches("s3cret", "s3creT")
    assert not client_state_matches("s3cret", "s3cret ")
    assert not client_state_matches("s3cret", None)


def test_empty_expected_client_state_never_matches() -> None:
    assert not client_state_matches("", "")
    assert not client_state_matches("", None)


SUB = "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f"
STATE = "state-for-sub"

RICH_POST = {
    "value": [
        {
            "subscriptionId": SUB,
            "changeType": "created",
            "clientState": STATE,
            "subscriptionExpirationDateTime": "2021-02-02T10:30:34.9097561-08:00",
            "resource": "chats('19:8ea0e38b@unq.gbl.spaces')/messages('1612289765949')",
            "resourceData": {
                "id": "1612289765949",
                "@odata.type": "#Microsoft.Graph.chatMessage",
                "@odata.id": "chats('19:8ea0e38b@unq.gbl.spaces')/messages('1612289765949')",
            },
            "encryptedContent": {
                "data": "AAAA",
                "dataKey": "BBBB",
                "dataSignature": "CCCC",
                "encryptionCertificateId": "cert-1",
                "encryptionCertificateThumbprint": "4B95353E086AD37196606ACF834A14532F03E6DB",
            },
            "tenantId": TENANT,
            "somethingGraphAddsLater": {"x": 1},
        }
    ],
    "validationTokens": ["eyJ0eXAi.e30.sig"],
}

LIFECYCLE_POST = {
    "value": [
        {
            "subscriptionId": SUB,
            "subscriptionExpirationDateTime": "2019-03-20T11:00:00.0000000Z",
            "tenantId": TENANT,
            "clientState": STATE,
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
}


def _item(post: dict[str, Any], **changes: Any) -> ChangeNotification:
    raw = {**post["value"][0], **changes}
    return ChangeNotification.model_validate({k: v for k, v in raw.items() if v is not None})


def test_rich_notification_post_parses() -> None:
    post = ChangeNotificationCollection.model_validate_json(json.dumps(RICH_POST))
    item = post.value[0]
    assert post.validation_tokens == ["eyJ0eXAi.e30.sig"]
    assert not item.is_lifecycle and item.change_type == "created"
    assert item.resource_data is not None and item.resource_data.odata_type == "#Microsoft.Graph.chatMessage"
    assert item.encrypted_content is not None and item.encrypted_content.encryption_certificate_id == "cert-1"
    assert item.subscription_expiration_date_time.utcoffset() == dt.timedelta(hours=-8)
    assert item.model_dump(exclude_none=True)["encryptedContent"]["dataKey"] == "BBBB"


def test_lifecycle_notification_parses_without_resource() -> None:
    post = ChangeNotificationCollection.model_validate(LIFECYCLE_POST)
    assert post.validation_tokens is None
    assert post.value[0].is_lifecycle and post.value[0].resource is None


def test_notification_item_with_matching_client_state_is_accepted() -> None:
    subscriptions = {SUB: STATE}
    assert verify_notification_item(_item(RICH_POST), subscriptions, tenant_ids={TENANT}) is None
    assert verify_notification_item(_item(LIFECYCLE_POST), subscriptions, tenant_ids={TENANT.upper()}) is None


def test_forged_client_state_is_dropped() -> None:
    subscriptions = {SUB: STATE}
    assert verify_notification_item(_item(RICH_POST, clientState="guess"), subscriptions, tenant_ids={TENANT}) == (
        "client_state_mismatch"
    )
    missing = _item(LIFECYCLE_POST, clientState=None)
    assert verify_notification_item(missing, subscriptions, tenant_ids={TENANT}) == "client_state_mismatch"


def test_notification_for_unknown_subscription_is_dropped() -> None:
    item = _item(RICH_POST, subscriptionId="00000000-0000-0000-0000-000000000000")
    assert verify_notification_item(item, {SUB: STATE}, tenant_ids={TENANT}) == "unknown_subscription"


def test_notification_from_another_tenant_is_dropped() -> None:
    item = _item(RICH_POST, tenantId=OTHER_TENANT)
    assert verify_notification_item(item, {SUB: STATE}, tenant_ids={TENANT}) == "wrong_tenant"


def test_notification_that_is_both_or_neither_change_and_lifecycle_is_dropped() -> None:
    both = _item(RICH_POST, lifecycleEvent="missed")
    neither = _item(RICH_POST, changeType=None)
    no_resource = _item(RICH_POST, resource=None)
    for item in (both, neither, no_resource):
        assert verify_notification_item(item, {SUB: STATE}, tenant_ids={TENANT}) == "malformed"
