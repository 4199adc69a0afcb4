"""The agent's three-hop token chain, built with msal, with one cached token per resource.

Hop 1 (Blueprint): a certificate assertion plus `fmi_path` buys a token for
`api://AzureADTokenExchange` on behalf of the Agent Identity. Hop 2 (Agent
Identity): hop 1's token as the client assertion buys the Agent Identity's own
exchange token. Hop 3 (Agent User): the `user_fic` grant turns hop 2's token
into a delegated token for the Agent User (`idtyp=user`).

What this module adds on top of msal: an in-memory cache per resource whose
fast path costs no thread and no I/O; refresh before expiry; single flight (a
hundred concurrent callers cause one refresh); msal kept off the event loop;
errors that name the failing hop, Entra's code and what to do; and, given a
replication window (graph/replication.py), patience with the AADSTS errors a
fresh application, key, consent or user gives until it has replicated.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from ..config import Settings
from ..errors import TokenError
from ..graph.replication import ReplicationGrace, backoff

if TYPE_CHECKING:  # msal and requests load with the first token, after `initialize` (msal_http.py)
    import msal
    import requests

log = structlog.get_logger(__name__)

EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
HOP1, HOP2, HOP3 = "hop1:blueprint", "hop2:agent_identity", "hop3:agent_user"

# Entra error codes we can explain. The hint says what the user should do.
_HINTS: dict[str, str] = {
    "AADSTS65001": "consent missing: run `agentseat setup --grant`",
    "AADSTS700027": "the certificate is not registered on the Blueprint (revoked or rotated?): run `agentseat setup`",
    "AADSTS700016": "unknown client id: check AGENTSEAT_BLUEPRINT_APP_ID / AGENTSEAT_AGENT_ID or run `agentseat setup`",
    "AADSTS700211": "AGENTSEAT_AGENT_ID is not an Agent Identity of this Blueprint (fmi_path): check it or run `agentseat setup`",
    "AADSTS700024": "the client assertion is outside its validity window: check the system clock",
    "AADSTS50034": "AGENTSEAT_AGENT_USER_ID does not name an Agent User of this Agent Identity",
    "AADSTS90002": "tenant not found: check AGENTSEAT_TENANT_ID and AGENTSEAT_AUTHORITY_HOST",
    "AADSTS7000215": "invalid client credential: run `agentseat setup` to register the agent's certificate",
}

Credential = Callable[[], dict[str, Any]]


def msal_http_client(settings: Settings) -> requests.Session:
    """The HTTP client msal uses: AGENTSEAT_CA_BUNDLE if set (the sandbox's CA), else system roots."""
    from .msal_http import msal_http_client as pinned

    return pinned(settings)


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT, unverified (for display and scope checks, never for trust)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (expected three dot-separated parts)")

    def segment(text: str) -> dict[str, Any]:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(data, dict):
            raise ValueError("a JWT segment is not a JSON object")
        return data

    try:
        return segment(parts[0]), segment(parts[1])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JWT: {type(exc).__name__}") from None


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float  # epoch seconds
    resource: str

    def fresh(self, margin: float) -> bool:
        return time.time() < self.expires_at - margin


def resource_scope(resource: str) -> str:
    return resource if resource.endswith("/.default") else resource.rstrip("/") + "/.default"


def _entra_code(result: dict[str, Any]) -> str | None:
    codes = result.get("error_codes") or []
    if codes:
        return f"AADSTS{codes[0]}"
    desc = str(result.get("error_description", ""))
    return desc.split(":", 1)[0] if desc.startswith("AADSTS") else None


def token_or_raise(hop: str, result: dict[str, Any] | None) -> str:
    if result and "access_token" in result:
        return str(result["access_token"])
    result = result or {}
    code = _entra_code(result)
    error = result.get("error", "no_token")
    first_line = str(result.get("error_description", "")).split("\r\n")[0].split(" Trace ID:")[0]
    raise TokenError(
        f"{hop} failed: {error}{f' ({code})' if code else ''}: {first_line or 'no access token returned'}",
        hop=hop,
        code=code,
        hint=_HINTS.get(code or "", "run `agentseat doctor` for a step-by-step check"),
    )


class TokenChain:
    """Mints tokens through the three hops. Synchronous: call it from a worker thread."""

    def __init__(self, settings: Settings, credential: Credential) -> None:
        self._settings = settings
        self._credential = credential
        self._authority = f"{settings.authority_host}/{settings.tenant_id}"
        self._blueprint: msal.ConfidentialClientApplication | None = None
        self._identity: msal.ConfidentialClientApplication | None = None
        # Startup asks for the delegated and the app-only token at once (runtime/sponsors.py), from
        # two threads: one hop 1 and one msal app of each kind serve both, not one per thread.
        self._hop1_lock, self._identity_lock = threading.Lock(), threading.Lock()
        #: msal's cache of discovery GETs (the authority's openid-configuration, kept a day; no tokens),
        #: shared by both apps so hop 2's app does not fetch again what hop 1's just did.
        self._http_cache: dict[str, Any] = {}

    def _app(self, client_id: str, credential: dict[str, Any], hop: str) -> msal.ConfidentialClientApplication:
        import msal
        import requests

        try:
            return msal.ConfidentialClientApplication(
                client_id,
                client_credential=credential,
                authority=self._authority,
                http_client=msal_http_client(self._settings),
                http_cache=self._http_cache,
                instance_discovery=False,
                timeout=self._settings.graph_timeout_seconds,
            )
        except requests.RequestException as exc:
            raise TokenError(
                f"{hop} failed: cannot reach the authority {self._authority}: {type(exc).__name__}",
                hop=hop,
                hint="check AGENTSEAT_AUTHORITY_HOST, AGENTSEAT_TENANT_ID, AGENTSEAT_CA_BUNDLE and the network",
            ) from exc
        except ValueError as exc:
            # msal raises ValueError both for a failed discovery and for an unusable credential.
            raise TokenError(
                f"{hop} failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                hop=hop,
                hint="check AGENTSEAT_AUTHORITY_HOST, AGENTSEAT_TENANT_ID and AGENTSEAT_CA_BUNDLE, "
                "and that the certificate and key load (`agentseat doctor`)",
            ) from exc

    def reset(self) -> None:
        """Forget msal's caches, so the next call mints every hop afresh."""
        self._blueprint = self._identity = None

    def _call(self, hop: str, fn: Callable[[], dict[str, Any]]) -> str:
        import requests

        started = time.perf_counter()
        try:
            result = fn()
        except TokenError:
            raise
        except (ValueError, requests.RequestException) as exc:
            raise TokenError(
                f"{hop} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                hop=hop,
                hint="check AGENTSEAT_AUTHORITY_HOST, AGENTSEAT_CA_BUNDLE and the network",
            ) from exc
        token = token_or_raise(hop, result)
        log.debug("token_hop", hop=hop, source=result.get("token_source"), ms=round((time.perf_counter() - started) * 1000, 1))
        return token

    def hop1(self) -> str:
        """Blueprint → a token for the Agent Identity (`fmi_path`)."""
        with self._hop1_lock:  # a second thread waits, then finds the token in msal's cache
            if self._blueprint is None:
                self._blueprint = self._app(self._settings.blueprint_app_id, self._credential(), HOP1)
            app = self._blueprint
            return self._call(HOP1, lambda: app.acquire_token_for_client([EXCHANGE_SCOPE],
                                                                         fmi_path=self._settings.agent_id))

    def _identity_app(self) -> msal.ConfidentialClientApplication:
        with self._identity_lock:
            if self._identity is None:
                # msal calls the assertion callable only when it needs the wire.
                self._identity = self._app(self._settings.agent_id, {"client_assertion": self.hop1}, HOP2)
            return self._identity

    def hop2(self, scope: str = EXCHANGE_SCOPE) -> dict[str, Any]:
        """The Agent Identity's own token: for the exchange, or app-only for a resource."""
        # Hop 1 first, on its own: msal would mint it inside hop 2 (the assertion callable), and a
        # failure there (authority unreachable, certificate revoked) must name hop 1. msal caches T1.
        self.hop1()
        app = self._identity_app()
        result: dict[str, Any] = {}

        def call() -> dict[str, Any]:
            nonlocal result
            result = app.acquire_token_for_client([scope])
            return result

        self._call(HOP2, call)
        return result

    def hop3(self, resource: str) -> dict[str, Any]:
        """The Agent User's delegated token for `resource` (user_fic grant)."""
        t2 = str(self.hop2()["access_token"])
        app = self._identity_app()
        result: dict[str, Any] = {}

        def call() -> dict[str, Any]:
            nonlocal result
            result = app.acquire_token_by_user_federated_identity_credential(
                [resource_scope(resource)], assertion=t2, user_object_id=self._settings.agent_user_id
            )
            return result

        self._call(HOP3, call)
        return result


class TokenProvider:
    """Async access to the agent's tokens: cached per resource, refreshed early, single flight."""

    def __init__(self, settings: Settings, credential: Credential, *, chain: TokenChain | None = None,
                 replication: ReplicationGrace | None = None) -> None:
        self._settings = settings
        self._chain = chain or TokenChain(settings, credential)
        #: The runtime's window (None: every error is final at once, as doctor and `token` want).
        self._replication = replication
        self._cache: dict[str, AccessToken] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._failures: dict[str, tuple[float, TokenError]] = {}
        self.refreshes = 0  # how many times the chain was walked (for status and tests)

    def _lock(self, key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    async def get(self, resource: str | None = None) -> str:
        """A valid delegated token for `resource` (default: Graph)."""
        return (await self.access_token(resource)).token

    async def access_token(self, resource: str | None = None) -> AccessToken:
        resource = resource or self._settings.graph_resource
        margin = self._settings.token_refresh_margin_seconds
        cached = self._cache.get(resource)
        if cached is not None and cached.fresh(margin):
            return cached  # the hot path: no thread, no lock
        waited_since = time.monotonic()
        async with self._lock(resource):
            cached = self._cache.get(resource)
            if cached is not None and cached.fresh(margin):
                return cached  # another caller refreshed while we waited
            failed = self._failures.get(resource)
            if failed is not None and failed[0] >= waited_since:
                # The refresh we queued behind has just failed: share its error instead of
                # walking the chain again once per waiting caller (single flight for failures too).
                raise failed[1]
            try:
                result = await self._walk(resource)
            except TokenError as exc:
                self._failures[resource] = (time.monotonic(), exc)
                raise
            token = AccessToken(str(result["access_token"]), time.time() + float(result.get("expires_in", 3600)), resource)
            self._cache[resource] = token
            self._failures.pop(resource, None)
            self.refreshes += 1
            log.info("token_refreshed", resource=resource, expires_in=int(token.expires_at - time.time()))
            return token

    async def _walk(self, resource: str) -> dict[str, Any]:
        """Walk the chain; inside the replication window, wait out what only needs replicating.

        Runs under the resource's lock, so the callers queued behind it wait for the
        same outcome (single flight), and it ends when the window does.
        """
        attempt = 0
        while True:
            try:
                result = await anyio.to_thread.run_sync(self._chain.hop3, resource)
            except TokenError as exc:
                grace = self._replication
                reason = grace.token_reason(resource, exc.code) if grace is not None else None
                if grace is None:
                    raise
                attempt += 1
                wait = backoff(attempt)
                if (reason is None and grace.outlasted(resource, exc.code)) or (reason and wait > grace.remaining()):
                    raise TokenError(f"{exc.message} (still, after the {grace.grace_seconds:g} s replication grace)",
                                     hop=exc.hop, code=exc.code, hint=exc.hint) from exc
                if reason is None:
                    raise
                log.warning("token_replication_wait", hop=exc.hop, code=exc.code, reason=reason,
                            wait=round(wait, 3), attempt=attempt, window_left=round(grace.remaining(), 1))
                await anyio.sleep(wait)
                # msal answers the same request with its cached error for a minute (its
                # throttled HTTP client); fresh apps ask Entra again.
                self._chain.reset()
                continue
            if self._replication is not None:
                self._replication.token_succeeded(resource)
            return result

    async def exchange_token(self) -> str:
        """Hop 2's token (the Agent Identity's exchange token), for `agentseat token --resource exchange`."""
        result = await anyio.to_thread.run_sync(self._chain.hop2)
        return str(result["access_token"])

    async def app_token(self, resource: str | None = None) -> str:
        """The Agent Identity's app-only token (two hops), e.g. to read its sponsors."""
        scope = resource_scope(resource or self._settings.graph_resource)
        result = await anyio.to_thread.run_sync(self._chain.hop2, scope)
        return str(result["access_token"])

    async def invalidate(self, token: str) -> None:
        """Graph rejected `token` (401): drop it so the next `get` walks the whole chain.

        Only the exact rejected token is dropped, so a hundred calls failing with
        the same stale token still cause one refresh.
        """
        for resource, cached in list(self._cache.items()):
            if cached.token == token:
                async with self._lock(resource):
                    if self._cache.get(resource) is cached:
                        del self._cache[resource]
                        self._chain.reset()
                        log.info("token_invalidated", resource=resource)


class AppOnlyTokens:
    """The Agent Identity's own app-only tokens (two hops), shaped for `GraphClient`.

    Some reads need app-only auth, such as an Agent Identity's sponsors
    (entrabot-anchor §1.3); msal caches hop 2, so this stays cheap.
    """

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider

    async def get(self, resource: str | None = None) -> str:
        return await self._provider.app_token(resource)

    async def invalidate(self, token: str) -> None:
        self._provider._chain.reset()  # noqa: SLF001 - the same chain, forced to mint afresh
