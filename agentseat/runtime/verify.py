"""Trust decisions for inbound Graph change notifications.

Owns three checks: an item's `clientState` and subscription (`verify_notification_item`),
and the `validationTokens` JWTs of rich notifications (`assess_tokens`, which also
says which audience the tenant used; `validate_tokens` raises instead) against
Entra's signing keys (`JwksCache`). The rules are those of "How to validate"
(learn.microsoft.com/graph/change-notifications-with-resource-data).

It knows no transport beyond fetching the JWKS document with a session the
caller owns; answering Graph (always 202) and logging rejections belong to
runtime/webhook.py.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import anyio
import jwt
import structlog

if TYPE_CHECKING:
    from agentseat.graph.models import ChangeNotification

__all__ = [
    "ISSUER_TEMPLATES",
    "NBF_LEEWAY_SECONDS",
    "JwksCache",
    "RejectReason",
    "TokenReport",
    "VerificationError",
    "assess_tokens",
    "client_state_matches",
    "validate_tokens",
    "verify_notification_item",
]

log = structlog.get_logger(__name__)

#: Both issuer forms, since Graph sends v1 and v2 tokens (see reference §6; the
#: .NET core SDK's ITokenValidableExtension accepts exactly these two).
ISSUER_TEMPLATES: tuple[str, ...] = (
    "https://login.microsoftonline.com/{tid}/v2.0",
    "https://sts.windows.net/{tid}/",
)
#: Clock skew tolerated for `nbf` only; an expired token is never accepted.
NBF_LEEWAY_SECONDS = 300.0

# Graph sends "a single token for each distinct app and tenant pair"
# (changeNotificationCollection), so a handful at most; more is abuse.
_MAX_TOKENS = 16
_MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 1_048_576
_MAX_CLAIM_CHARS = 200  # a claim kept as a tenant fact (ids and URLs are far shorter)

RejectReason = Literal["unknown_subscription", "client_state_mismatch", "wrong_tenant", "malformed"]


class VerificationError(ValueError):
    """A notification failed a trust check. `reason` is a short loggable code, never a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"notification not trusted: {reason}")
        self.reason = reason


def client_state_matches(expected: str, got: str | None) -> bool:
    """Constant-time `clientState` comparison; an empty expected value never matches (fail closed)."""
    if not expected or got is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), got.encode("utf-8"))


def verify_notification_item(
    notification: ChangeNotification,
    subscriptions: Mapping[str, str],
    *,
    tenant_ids: Collection[str],
) -> RejectReason | None:
    """Check one parsed item against our subscriptions (id -> expected clientState).

    Returns None to accept, or the reason to drop it. Graph's rule: the
    clientState "must match", otherwise treat the notification as invalid
    (change-notifications-delivery-webhooks, "Receive notifications").
    """
    expected = subscriptions.get(notification.subscription_id)
    if expected is None:
        return "unknown_subscription"
    if not client_state_matches(expected, notification.client_state):
        return "client_state_mismatch"
    if notification.tenant_id.lower() not in {tid.lower() for tid in tenant_ids}:
        return "wrong_tenant"
    # changeType and lifecycleEvent are mutually exclusive (changeNotification resource),
    # and a change without a resource names nothing to fetch.
    if (notification.change_type is None) == (notification.lifecycle_event is None):
        return "malformed"
    if not notification.is_lifecycle and not notification.resource:
        return "malformed"
    return None


class JwksCache:
    """Entra's token signing keys, by `kid`, fetched on demand.

    - An unknown `kid` triggers a refetch ("keys are rotated daily"), at most one
      per `refetch_interval` seconds (`failure_backoff` after a failed fetch), so
      forged tokens cannot turn us into an amplifier against the key endpoint.
    - Concurrent callers share one in-flight fetch.
    - Keys older than `max_age` are refreshed on next use; on failure the old keys stay.
    - It also remembers tokens whose signature it verified (by SHA-256 of the
      token, not the token), because Graph repeats the same token on every POST
      for hours; a remembered token whose key left the set is verified again.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        ssl: SSLContext | bool = True,
        refetch_interval: float = 60.0,
        failure_backoff: float = 5.0,
        max_age: float = 86_400.0,
        timeout: float = 10.0,
        max_remembered_tokens: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._session = session
        self._ssl = ssl
        self._refetch_interval = refetch_interval
        self._failure_backoff = failure_backoff
        self._max_age = max_age
        self._timeout = timeout
        self._max_remembered = max_remembered_tokens
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_ok = False
        self._generation = 0  # counts completed fetch attempts; waiters use it to skip a repeat
        self._lock = anyio.Lock()
        self._verified: OrderedDict[bytes, tuple[str, dict[str, Any]]] = OrderedDict()

    async def get_key(self, kid: str) -> jwt.PyJWK:
        """The key for `kid`, fetching the JWKS if needed; `VerificationError("unknown_kid")` otherwise."""
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        generation = self._generation
        async with self._lock:
            # Whoever held the lock before us may have fetched already: share that result.
            if self._generation == generation and self._may_fetch():
                await self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise VerificationError("unknown_kid")
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _may_fetch(self) -> bool:
        if self._last_attempt is None:
            return True
        wait = self._refetch_interval if self._last_ok else self._failure_backoff
        if self._clock() - self._last_attempt >= wait:
            return True
        log.debug("jwks_refetch_suppressed", url=self._url)
        return False

    async def _fetch(self) -> None:
        try:
            with anyio.fail_after(self._timeout):
                async with self._session.get(self._url, ssl=self._ssl, allow_redirects=False) as response:
                    if response.status != 200:
                        raise ValueError(f"HTTP {response.status}")
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65_536):
                        body += chunk
                        if len(body) > _MAX_JWKS_BYTES:
                            raise ValueError("JWKS document too large")
            keys = _parse_jwks(json.loads(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # Cancellation is not caught: a cancelled fetch leaves no trace, so the next caller retries.
            self._last_attempt, self._last_ok = self._clock(), False
            self._generation += 1
            log.warning("jwks_fetch_failed", url=self._url, error=str(exc)[:200], keys_kept=len(self._keys))
            return
        self._keys = keys
        self._last_attempt = self._fetched_at = self._clock()
        self._last_ok = True
        self._generation += 1
        log.info("jwks_fetched", url=self._url, keys=len(keys))

    def _recall(self, token: str) -> dict[str, Any] | None:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        entry = self._verified.get(digest)
        if entry is None:
            return None
        kid, claims = entry
        if kid not in self._keys:  # the signing key was rotated out: trust nothing it signed
            del self._verified[digest]
            return None
        self._verified.move_to_end(digest)
        return claims

    def _remember(self, token: str, kid: str, claims: dict[str, Any]) -> None:
        self._verified[hashlib.sha256(token.encode("utf-8")).digest()] = (kid, claims)
        while len(self._verified) > self._max_remembered:
            self._verified.popitem(last=False)


def _parse_jwks(document: object) -> dict[str, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        # Only RSA signing keys: validation tokens are RS256 and nothing else is accepted.
        if not isinstance(kid, str) or jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            continue
        if jwk.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[kid] = jwt.PyJWK(jwk, algorithm="RS256")
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
    if not keys:
        raise ValueError("JWKS document has no usable RSA signing key")
    return keys


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, to pick the key by its kid; `jwt.decode` checks the whole token after.

    Not `jwt.get_unverified_header`: since PyJWT 2.15 it validates every character of all
    three segments in Python (~60 us each on a validation token) and `jwt.decode` does it
    again. The header alone, strictly decoded in C, is all the key lookup needs: a header
    that differs from what PyJWT reads fails its signature or PyJWT's own parse.
    """
    segment = token.split(".", 1)[0]
    try:
        raw = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
        header = json.loads(raw)
    except (ValueError, binascii.Error):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise VerificationError("malformed_token") from None
    if not isinstance(header, dict) or token.count(".") != 2:
        raise VerificationError("malformed_token")
    return header


async def _signed_claims(token: object, jwks: JwksCache) -> tuple[dict[str, Any], str | None]:
    """Claims of a token whose RS256 signature checks out; kid is None when recalled from cache."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
        raise VerificationError("malformed_token")
    claims = jwks._recall(token)
    if claims is not None:
        return claims, None
    header = _unverified_header(token)
    # Pin the algorithm before touching keys: `none` and HS* (key confusion) never pass.
    if header.get("alg") != "RS256":
        raise VerificationError("bad_alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VerificationError("missing_kid")
    key = await jwks.get_key(kid)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            # Claims are checked below, against our clock and with our reasons.
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise VerificationError("bad_signature") from None
    except jwt.PyJWTError:
        raise VerificationError("malformed_token") from None
    return claims, kid


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_claims(
    claims: Mapping[str, Any],
    *,
    now: float,
    audiences: Collection[str],
    issuers: Collection[str],
    tenant_ids: Collection[str],
    caller_app_id: str,
) -> None:
    # Order follows "How to validate": expiry, audience, issuer/tenant, caller.
    exp = claims.get("exp")
    if not _is_number(exp):
        raise VerificationError("missing_exp")
    if now >= exp:
        raise VerificationError("expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not _is_number(nbf) or nbf > now + NBF_LEEWAY_SECONDS):
        raise VerificationError("not_yet_valid")
    aud = claims.get("aud")
    aud_values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(value, str) and value in audiences for value in aud_values):
        raise VerificationError("bad_audience")
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in issuers:
        raise VerificationError("bad_issuer")
    tid = claims.get("tid")
    if tid is not None and (not isinstance(tid, str) or tid not in tenant_ids):
        raise VerificationError("bad_tenant")
    # v1 tokens name the caller in `appid`, v2 in `azp`; "failure to validate the
    # appropriate claim may result in accepting notifications from an untrusted publisher".
    version = claims.get("ver")
    if version == "2.0":
        caller = claims.get("azp")
    elif version == "1.0":
        caller = claims.get("appid")
    else:
        raise VerificationError("bad_version")
    if caller != caller_app_id:
        raise VerificationError("bad_caller")


@dataclass(frozen=True, slots=True)
class TokenReport:
    """What one POST's `validationTokens` amounted to.

    - `reason`: None when every token verified for one of `audiences`, else the
      first failure (`blueprint_audience` when the only fault is an `aud` naming
      the Blueprint, which we record but do not count as verified).
    - `seen`: ids-only claims of the first token whose signature verified, with the
      audience classified (`agent_identity` | `blueprint` | `other`), or
      `{"audience": "missing"}` when there were no tokens; None when no token's
      signature verified (unsigned claims are a sender's word, never a tenant fact).
    """

    reason: str | None
    seen: dict[str, Any] | None = None

    @property
    def blueprint(self) -> bool:
        return self.reason == "blueprint_audience"


def _seen(claims: Mapping[str, Any], audiences: Collection[str], blueprint_audiences: Collection[str]) -> dict[str, Any]:
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    kind = ("agent_identity" if any(v in audiences for v in values)
            else "blueprint" if any(v in blueprint_audiences for v in values) else "other")
    seen: dict[str, Any] = {"audience": kind}
    for name in ("aud", "iss", "azp", "appid", "ver"):
        value = claims.get(name)
        if isinstance(value, str):
            seen[name] = value[:_MAX_CLAIM_CHARS]
        elif isinstance(value, list):
            seen[name] = [v[:_MAX_CLAIM_CHARS] for v in value[:4] if isinstance(v, str)]
    return seen


async def assess_tokens(
    tokens: Sequence[str] | None,
    *,
    jwks: JwksCache,
    audiences: Collection[str],
    blueprint_audiences: Collection[str] = (),
    tenant_ids: Collection[str],
    caller_app_id: str,
    now: float | None = None,
    issuer_templates: Sequence[str] = ISSUER_TEMPLATES,
) -> TokenReport:
    """Check every `validationTokens` JWT of one POST and say what was seen; never raises.

    "If any tokens fail, consider the change notification suspicious" (How to
    validate), so all must pass; checking stops at the first failure. A token
    whose only fault is that its `aud` is in `blueprint_audiences` does not stop
    the check: the docs do not say whether Graph names the Agent Identity or its
    Blueprint (issue 11), so the caller learns `blueprint_audience` and decides.
    `tenant_ids` are compared in lowercase, as Entra writes them; `now` is epoch seconds.
    """
    if not tokens:
        return TokenReport("missing_tokens", {"audience": "missing"})
    if isinstance(tokens, str):
        return TokenReport("malformed_token")
    if len(tokens) > _MAX_TOKENS:
        return TokenReport("too_many_tokens")
    if not audiences or not tenant_ids or not caller_app_id:
        return TokenReport("not_configured")
    tenants = {tid.lower() for tid in tenant_ids}
    issuers = {template.format(tid=tid) for tid in tenants for template in issuer_templates}
    now = time.time() if now is None else now
    seen: dict[str, Any] | None = None
    blueprint = False
    for token in tokens:
        try:
            claims, kid = await _signed_claims(token, jwks)
        except VerificationError as exc:
            return TokenReport(exc.reason, seen)
        if seen is None:
            seen = _seen(claims, audiences, blueprint_audiences)
        check = functools.partial(_check_claims, claims, now=now, issuers=issuers, tenant_ids=tenants,
                                  caller_app_id=caller_app_id)
        try:
            check(audiences=audiences)
        except VerificationError as exc:
            if exc.reason != "bad_audience" or not blueprint_audiences:
                return TokenReport(exc.reason, seen)
            try:
                check(audiences=blueprint_audiences)
            except VerificationError as again:
                return TokenReport(again.reason if again.reason != "bad_audience" else exc.reason, seen)
            blueprint = True
        if kid is not None:
            jwks._remember(token, kid, claims)  # claims are checked again on every recall
    return TokenReport("blueprint_audience" if blueprint else None, seen)


async def validate_tokens(
    tokens: Sequence[str] | None,
    *,
    jwks: JwksCache,
    audiences: Collection[str],
    tenant_ids: Collection[str],
    caller_app_id: str,
    now: float | None = None,
    issuer_templates: Sequence[str] = ISSUER_TEMPLATES,
) -> None:
    """Validate every `validationTokens` JWT of one POST; raise `VerificationError` on the first failure.

    "If any tokens fail, consider the change notification suspicious" (How to
    validate), so all must pass. `tenant_ids` are the tenants we serve; GUIDs
    are compared in lowercase, as Entra writes them. `now` is epoch seconds.
    """
    report = await assess_tokens(tokens, jwks=jwks, audiences=audiences, tenant_ids=tenant_ids,
                                 caller_app_id=caller_app_id, now=now, issuer_templates=issuer_templates)
    if report.reason is not None:
        raise VerificationError(report.reason)
