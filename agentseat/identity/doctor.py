"""`agentseat doctor` and `agentseat token`: check the agent's identity step by step, print a token.

The doctor walks what the runtime needs in order (settings, the key store, certificate expiry,
each hop of the token chain on its own, Graph, the granted scopes) and prints one ✓/✗ line per
check with a one-line fix, so a failure names the step, never just "auth failed". It uses the
same `TokenChain` and `GraphClient` as the runtime. Nothing here prints or logs a token, except
`agentseat token`, whose job that is (on stdout, like `az account get-access-token`).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import anyio
import structlog

from ..config import Settings
from ..errors import AgentSeatError, ConfigError
from ..graph.client import FixedToken, GraphClient
from .keys import AgentCertificate, KeyStore
from .provision_graph import REQUIRED_SCOPES
from .tokens import TokenChain, TokenProvider, decode_jwt

log = structlog.get_logger(__name__)

EXPIRY_WARNING_DAYS = 30
_SETUP = "run `agentseat setup`"


@dataclass
class Check:
    name: str
    status: str  # "ok" | "fail" | "warn" | "skip"
    detail: str
    fix: str = ""

    def render(self) -> str:
        mark = {"ok": "✓", "fail": "✗", "warn": "!", "skip": "–"}[self.status]
        line = f"{mark} {self.name}: {self.detail}"
        return line + (f"\n    fix: {self.fix}" if self.fix and self.status in ("fail", "warn") else "")


def credential_for(settings: Settings, store: KeyStore | None = None) -> Any:
    """The agent's msal certificate credential, loaded from the key store when msal needs it."""
    store = store or KeyStore(settings)
    return lambda: store.load_pem_credential(settings.cert_thumbprint or None)


def _failed(name: str, exc: AgentSeatError) -> Check:
    return Check(name, "fail", exc.message, exc.hint or "")


async def diagnose(settings: Settings) -> list[Check]:
    """Every check, in order; later checks are skipped when what they need failed."""
    checks: list[Check] = []
    missing = settings.missing_identity()
    if missing:
        checks.append(Check("settings", "fail", f"missing {', '.join(missing)} (config file {settings.config_file})",
                            f"{_SETUP}, or pass --env-file with the file setup wrote"))
    else:
        checks.append(Check("settings", "ok", f"tenant {settings.tenant_id}, agent user "
                                              f"{settings.agent_user_upn or settings.agent_user_id}"))
    store = KeyStore(settings)
    cert: AgentCertificate | None = None
    try:
        cert = await anyio.to_thread.run_sync(store.load, settings.cert_thumbprint or None)
        note = "" if not settings.cert_thumbprint or settings.cert_thumbprint.upper() == store.active() else \
            " (not the store's active certificate)"
        checks.append(Check("key", "ok", f"certificate {cert.sha1_thumbprint} and its encrypted key load from "
                                         f"{store.dir}{note}"))
    except AgentSeatError as exc:
        checks.append(_failed("key", exc))
    if cert is not None:
        days = (cert.not_after - dt.datetime.now(dt.timezone.utc)).days
        when = f"{cert.not_after:%Y-%m-%d}"
        if days < 0:
            checks.append(Check("certificate", "fail", f"expired on {when}", "run `agentseat setup --rotate-key`"))
        elif days < EXPIRY_WARNING_DAYS:
            checks.append(Check("certificate", "warn", f"expires on {when}, in {days} days",
                                "run `agentseat setup --rotate-key`, then `--retire-old`"))
        else:
            checks.append(Check("certificate", "ok", f"valid until {when} ({days} days)"))
    if missing or cert is None:
        reason = "needs the settings and the key above"
        for name in ("hop 1", "hop 2", "hop 3", "graph", "scopes"):
            checks.append(Check(name, "skip", reason))
        return checks
    chain = TokenChain(settings, credential_for(settings, store))
    token = await _hops(chain, settings, checks)
    if token is None:
        return checks
    try:
        async with GraphClient(settings, FixedToken(token)) as graph:
            me = await graph.get("/me", **{"$select": "id,userPrincipalName"})
        checks.append(Check("graph", "ok", f"GET /me answers as {me.get('userPrincipalName')} "
                                           f"at {settings.graph_host}"))
    except AgentSeatError as exc:
        checks.append(_failed("graph", exc))
    scp = set(str(decode_jwt(token)[1].get("scp", "")).split())
    absent = [s for s in REQUIRED_SCOPES if s not in scp]
    if absent:
        checks.append(Check("scopes", "fail", f"the token lacks {' '.join(absent)}", "run `agentseat setup --grant`"))
    else:
        checks.append(Check("scopes", "ok", f"all {len(REQUIRED_SCOPES)} scopes the runtime and its subscriptions "
                                            "need are granted"))
    return checks


async def _hops(chain: TokenChain, settings: Settings, checks: list[Check]) -> str | None:
    """Each hop on its own, so a failure names it; returns hop 3's token, or None."""
    steps = (
        ("hop 1", chain.hop1, f"the Blueprint signs in for Agent Identity {settings.agent_id} (fmi_path)"),
        ("hop 2", chain.hop2, "the Agent Identity gets its exchange token"),
        ("hop 3", lambda: chain.hop3(settings.graph_resource),
         f"the Agent User {settings.agent_user_upn or settings.agent_user_id} gets a delegated Graph token"),
    )
    token: Any = None
    for index, (name, call, detail) in enumerate(steps):
        try:
            token = await anyio.to_thread.run_sync(call)
        except AgentSeatError as exc:
            checks.append(_failed(name, exc))
            for later, _, _ in steps[index + 1:]:
                checks.append(Check(later, "skip", f"needs {name}"))
            checks.append(Check("graph", "skip", "needs a token"))
            checks.append(Check("scopes", "skip", "needs a token"))
            return None
        checks.append(Check(name, "ok", detail))
    return str(token["access_token"])


#: More checks for a transport: given the settings and whether the identity checks passed.
ExtraChecks = Callable[[Settings, bool], Awaitable[list[Check]]]


async def doctor(settings: Settings, out: TextIO | None = None, *, extra: ExtraChecks | None = None) -> int:
    """`agentseat doctor`: print every check (and `extra`'s, which cli.py picks by mode); 1 if any failed."""
    out = out or sys.stdout
    checks = await diagnose(settings)
    if extra is not None:
        checks += await extra(settings, not any(c.status == "fail" for c in checks))
    for check in checks:
        print(check.render(), file=out, flush=True)
    failed = [c.name for c in checks if c.status == "fail"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed", file=out)
    return 1 if failed else 0


async def token(settings: Settings, resource: str = "graph", *, decode: bool = False,
                out: TextIO | None = None) -> int:
    """`agentseat token`: the current access token for `graph`, `exchange` (hop 2) or a resource URI."""
    out = out or sys.stdout
    missing = settings.missing_identity()
    if missing:
        raise ConfigError(f"missing settings: {', '.join(missing)}", hint=_SETUP)
    provider = TokenProvider(settings, credential_for(settings))
    if resource == "exchange":
        value = await provider.exchange_token()
    else:
        value = await provider.get(settings.graph_resource if resource in ("", "graph") else resource)
    if decode:
        header, claims = decode_jwt(value)
        print(json.dumps({"header": header, "claims": claims}, indent=2, sort_keys=True), file=out)
    else:
        print(value, file=out)
    return 0
