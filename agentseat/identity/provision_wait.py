"""Waiting out Entra's replication at the end of `agentseat setup`, with visible progress.

New objects, keys, grants and app roles take from seconds to minutes to reach the token
endpoint and Graph (entrabot Learning #8: 30-120 s; issue 11, variant 4). Setup therefore
ends by doing what the runtime will do first: the three hops of the token chain, `GET /me`
with the Agent User's token, and the sponsors read with the Agent Identity's app-only token.
While one fails in a way replication explains, it prints a progress line and tries again,
for at most `AGENTSEAT_SETUP_WAIT_SECONDS` (or `setup --wait`) over the whole run. If time
runs out it says what is still missing and how to resume; any other failure stops at once.
`ReplicationWait` is the budget, shared with the retries of the setup steps themselves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import structlog

from ..config import Settings
from ..errors import GraphError, ProvisionError, TokenError
from ..graph.client import FixedToken, GraphClient
from ..tenant_facts import TenantFacts
from .keys import KeyStore
from .tokens import TokenChain, resource_scope

if TYPE_CHECKING:
    from .provision import Provisioner

log = structlog.get_logger(__name__)

#: Seconds between tries: short at first (the sandbox's and most tenants' delays are short), then steady.
_PAUSES = (2.0, 4.0, 8.0, 15.0)
#: Token endpoint codes a not-yet-replicated object, key or grant produces (entra/replication.py cites them).
_TOKEN_WAITS = {
    "AADSTS700016": "the new {client} to reach the token endpoint",
    "AADSTS7000229": "the new service principal to reach the token endpoint",
    "AADSTS700027": "the new key to reach the token endpoint",
    "AADSTS700211": "the new Agent Identity to reach the token endpoint",
    "AADSTS50034": "the new Agent User to reach the token endpoint",
    "AADSTS65001": "delegated consent to reach the token endpoint",
}


class ReplicationWait:
    """One budget of waiting per setup run; each pause prints `waiting for ... 40 s / 180 s`."""

    def __init__(self, seconds: float, err: TextIO) -> None:
        self.budget = max(0.0, seconds)
        self.err = err
        self._started: float | None = None
        self._pauses = 0

    @property
    def waited(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    async def pause(self, what: str) -> bool:
        """Sleep before the next try and say so; False (without sleeping) once the budget is spent."""
        if self._started is None:
            self._started = time.monotonic()
        left = self.budget - self.waited
        if left <= 0:
            return False
        delay = min(_PAUSES[min(self._pauses, len(_PAUSES) - 1)], left)
        self._pauses += 1
        print(f"  waiting for {what}… {self.waited + delay:.0f} s / {self.budget:.0f} s", file=self.err, flush=True)
        log.info("provision_waiting_for_replication", what=what, waited=round(self.waited), budget=self.budget)
        await anyio.sleep(delay)
        return True


@dataclass(frozen=True)
class SeatIds:
    """What the checks sign in as: the ids setup just wrote to the config file."""

    tenant_id: str
    blueprint_app_id: str
    agent_id: str
    agent_object_id: str
    agent_user_id: str
    cert_thumbprint: str


class _Waiting(Exception):
    """A check failed the way replication explains: `what` is still on its way."""

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(what)
        self.what, self.cause = what, cause


def _token_step(hop: Callable[[], Any], client: str) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        try:
            return await anyio.to_thread.run_sync(hop)
        except TokenError as exc:
            what = _TOKEN_WAITS.get(exc.code or "")
            if what is None:
                raise
            raise _Waiting(what.format(client=client), f"{exc.hop}: {exc.code}") from exc
    return run


async def _graph_step(settings: Settings, token: str, path: str, what: dict[int, str]) -> None:
    async with GraphClient(settings, FixedToken(token)) as graph:
        try:
            await graph.get(path)
        except GraphError as exc:
            if exc.status not in what:
                raise
            cause = f"GET {path}: HTTP {exc.status}{' ' + exc.code if exc.code else ''}"
            raise _Waiting(what[exc.status], cause) from exc


async def _check_once(settings: Settings, chain: TokenChain, ids: SeatIds) -> None:
    """The runtime's first calls, in order; raises `_Waiting` for the first one not there yet."""
    await _token_step(chain.hop1, "Blueprint or Agent Identity")()
    await _token_step(chain.hop2, "Agent Identity")()
    delegated = await _token_step(lambda: chain.hop3(settings.graph_resource), "Agent Identity")()
    await _graph_step(settings, str(delegated["access_token"]), "/me",
                      {401: "the Agent User's token to reach Graph", 403: "delegated consent to reach Graph",
                       404: "the new Agent User to reach Graph"})
    app_only = await _token_step(lambda: chain.hop2(resource_scope(settings.graph_resource)), "Agent Identity")()
    await _graph_step(settings, str(app_only["access_token"]),
                      f"/servicePrincipals/{ids.agent_object_id}/microsoft.graph.agentIdentity/sponsors",
                      {401: "the Agent Identity's token to reach Graph",
                       403: "the app role Application.Read.All to reach Graph",
                       404: "the new Agent Identity to reach Graph"})


async def wait_until_usable(settings: Settings, ids: SeatIds, wait: ReplicationWait) -> None:
    """Return once the agent can sign in and call Graph; else raise `ProvisionError` naming what is missing."""
    seat = settings.model_copy(update={"tenant_id": ids.tenant_id, "blueprint_app_id": ids.blueprint_app_id,
                                       "agent_id": ids.agent_id, "agent_user_id": ids.agent_user_id,
                                       "cert_thumbprint": ids.cert_thumbprint})
    store = KeyStore(seat)
    chain = TokenChain(seat, lambda: store.load_pem_credential(ids.cert_thumbprint))
    while True:
        try:
            await _check_once(seat, chain, ids)
            return
        except _Waiting as waiting:
            log.info("provision_not_replicated_yet", what=waiting.what, cause=waiting.cause)
            chain.reset()  # the next try mints every hop again
            if not await wait.pause(waiting.what):
                raise ProvisionError(
                    f"setup made every change, but after {wait.waited:.0f} s Entra is still missing: {waiting.what} "
                    f"({waiting.cause})",
                    hint="this is replication, which can take minutes: run `agentseat setup` again (it finds every "
                    "change made and only waits), or give it longer with `agentseat setup --wait 600`") from None


async def confirm_seat(p: Provisioner, *, changed: bool) -> None:
    """Wait until the seat `p` set up works as the runtime will use it; record what the tenant did
    (tenant facts `replication_wait_seconds` and `blueprint_key_route`, warning `setup_replication`)."""
    seat, settings = p.seat, p.settings
    cert = seat.cert_sha1 or settings.cert_thumbprint or await anyio.to_thread.run_sync(p.store.active)
    facts = TenantFacts(settings.state_dir)
    if p.d.key_route:
        facts.record("blueprint_key_route", p.d.key_route)
    if not (seat.blueprint and seat.identity and seat.user and cert):
        return
    ids = SeatIds(tenant_id=seat.tenant_id, blueprint_app_id=str(seat.blueprint["appId"]),
                  agent_id=str(seat.identity["appId"]), agent_object_id=str(seat.identity["id"]),
                  agent_user_id=str(seat.user["id"]), cert_thumbprint=cert)
    try:
        await wait_until_usable(settings, ids, p.wait)
    except ProvisionError as exc:
        facts.warn("setup_replication", exc.message)
        raise
    facts.warn("setup_replication", None)
    if changed or p.wait.waited:
        facts.record("replication_wait_seconds", round(p.wait.waited))
    waited = f" (after {p.wait.waited:.0f} s of replication)" if p.wait.waited else ""
    print(f"  ✓ the agent signs in and reaches Graph{waited}", file=p.err, flush=True)
