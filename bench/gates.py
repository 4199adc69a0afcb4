"""Trust confirmation and access policy, per item, in-process (issue 16, point 4).

The end-to-end figures already carry both: the webhook latency phase times a sponsor's DM
(confirmed with one Graph GET) against an untrusted one, with Graph at 0 and 100 ms, and
every throughput run passes its items through the intake and the `tenant` access policy.
What they do not show is what each step costs the CPU per item, so this module runs the
runtime's own `Intake` (runtime/intake.py) and `AccessPolicy` (access/policy.py) on events
planned from genuine sandbox notifications:

- the intake's store step of untrusted colleague events, as the pipeline's `BatchStore`
  calls it (`Intake.write` in one worker-thread call, then `Intake.settle` on the loop), under
  `TenantGate` (stored from the notification alone) and under `AccessPolicy` in `tenant` mode;
- `AccessPolicy.decide` alone, per event, in `tenant` (open), `allowlist` (allowed, so
  confirmed with Graph first) and `pairing` (unknown sender: held) modes;
- trust confirmation of sponsor events: the same store step (kept pending, durably) and the
  confirmation worker (`Intake.run`) reading each message back and storing Graph's version.
  The reader answers from memory, so this is the CPU of confirming, not Graph's round trip
  (that is the latency phase's line); the intake's Graph rate limit is lifted for the run.

Medians of interleaved rounds, microseconds per item; CPU is `time.process_time` (all threads).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import anyio

from agentseat.access.policy import AccessPolicy
from agentseat.access.store import AccessStore
from agentseat.graph.client import ssl_context
from agentseat.identity.keys import KeyStore
from agentseat.runtime.crypto import KeyRing
from agentseat.runtime.events import Event
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.intake import Intake, TenantGate
from agentseat.runtime.normalize import TrustPolicy
from agentseat.runtime.pipeline import (
    KnownSubscription,
    check_tokens,
    decrypt_items,
    parse_collection,
    plan_actions,
    screen_items,
)
from agentseat.runtime.verify import JwksCache

from .harness import SandboxHost, settings_from_env

ROUNDS = 4
MODES = ("tenant", "allowlist", "pairing")


async def _planned(host: SandboxHost, settings: Any, http: aiohttp.ClientSession, count: int,
                   sponsor: bool) -> tuple[list[Event], dict[str, dict[str, Any]], TrustPolicy]:
    """`count` events planned from genuine notifications, and each message as Graph has it (by id).

    With `sponsor`, their sender is the policy's sponsor: the events need Graph's confirmation."""
    cert = KeyStore(settings).load(settings.cert_thumbprint)
    ring = KeyRing()
    ring.add(cert.private_key, certificate=cert.certificate, certificate_id=cert.sha1_thumbprint)
    synthetic = {"id": str(uuid.uuid4()), "client_state": "bench-state", "der_b64": cert.der_b64,
                 "certificate_id": cert.sha1_thumbprint}
    bodies = await host.notification_bodies(count, 1, synthetic=synthetic)
    sub_id = json.loads(bodies[0][1])["value"][0]["subscriptionId"]
    known = {sub_id: KnownSubscription(sub_id, "teams", "bench-state")}
    jwks = JwksCache(settings.jwks_url, http, ssl=ssl_context(settings))
    own = {settings.agent_user_id.lower(), settings.agent_user_upn.lower()} - {""}
    domains = {settings.agent_user_upn.rpartition("@")[2].lower()}
    items = []
    for _, body in bodies:
        collection = parse_collection(body)
        screened, _ = screen_items(collection, known, tenant_id=settings.tenant_id, lifecycle_endpoint=False)
        screened = (await check_tokens(collection, screened, jwks=jwks, settings=settings)).items
        decrypted, _ = decrypt_items(screened, ring)
        items += decrypted
    senders = {str(i.resource["from"]["user"]["id"]).lower() for i in items if i.resource}
    policy = TrustPolicy(tenant_id=settings.tenant_id, own_ids=own, domains=domains,
                         sponsor_ids=senders if sponsor else set())
    events = plan_actions(items, policy).events
    messages = {str(i.resource["id"]): i.resource for i in items if i.resource}
    return events, messages, policy


def _timed(samples: dict[str, list[tuple[float, float]]], label: str, items: int) -> Any:
    class Timer:
        def __enter__(self) -> None:
            self.cpu, self.wall = time.process_time(), time.perf_counter()

        def __exit__(self, *exc: object) -> None:
            cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
            samples.setdefault(label, []).append((cpu * 1e6 / items, wall * 1e6 / items))

    return Timer()


async def _store(intake: Intake, event: Event) -> None:
    """One POST's store step for one unconfirmed event, as runtime/batch.py's BatchStore does it."""
    await intake.settle([event], await anyio.to_thread.run_sync(intake.write, [event]))


async def measure(host: SandboxHost, env: dict[str, str], workdir: Path, *, posts: int) -> dict[str, Any]:
    settings = settings_from_env(env)
    workdir.mkdir(parents=True, exist_ok=True)
    per = max(25, posts // ROUNDS)  # enough items that a round is not one scheduler tick
    samples: dict[str, list[tuple[float, float]]] = {}
    decide_us: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        colleague, _, policy = await _planned(host, settings, http, per * ROUNDS * 2, sponsor=False)
        sponsor, messages, sponsor_policy = await _planned(host, settings, http, per * ROUNDS, sponsor=True)
    if not colleague or not sponsor or any(e.trust != "sponsor" or e.confirmed for e in sponsor):
        return {"skipped": "the sandbox's notifications did not plan into the events this needs"}
    inbox = Inbox(workdir / "gates-inbox.db")

    async def read(chat_id: str, message_id: str) -> dict[str, Any] | None:
        return messages.get(message_id)

    access = AccessPolicy(settings.model_copy(update={"inbound_policy": "tenant"}),
                          store=AccessStore(workdir / "gates-access.db"))
    plain = Intake(inbox, workdir / "gates-intake-plain.db", policy=policy, gate=TenantGate())
    gated = Intake(inbox, workdir / "gates-intake-policy.db", policy=policy, gate=access)
    confirming = Intake(inbox, workdir / "gates-intake-confirm.db", policy=sponsor_policy, reader=read,
                        rate=1e9, burst=1e9, max_pending=10 * len(sponsor))
    try:
        for r in range(ROUNDS):
            chunks = {"plain": colleague[2 * r * per:(2 * r + 1) * per],
                      "policy": colleague[(2 * r + 1) * per:(2 * r + 2) * per]}
            order = ("plain", "policy") if r % 2 == 0 else ("policy", "plain")
            for name in order:
                intake = plain if name == "plain" else gated
                with _timed(samples, f"admit_{'tenant_gate' if name == 'plain' else 'access_policy'}", per):
                    for event in chunks[name]:
                        await _store(intake, event)
            chunk = sponsor[r * per:(r + 1) * per]
            with _timed(samples, "confirm_admit_pending", per):
                for event in chunk:
                    await _store(confirming, event)
            async with anyio.create_task_group() as tg:
                with _timed(samples, "confirm_worker", per):
                    tg.start_soon(confirming.run)
                    with anyio.fail_after(60):
                        while confirming.counters["pending"] > 0:
                            await anyio.sleep(0.005)  # few wake-ups: this loop's CPU counts too
                tg.cancel_scope.cancel()
        decide_us = _decide(settings, colleague, workdir)
        confirmed = confirming.counters.get("confirmed", 0)
    finally:
        for closing in (plain, gated, confirming, access):
            closing.close()
        inbox.close()
    out: dict[str, Any] = {label: {"cpu_us_per_item": round(median(v[0] for v in values), 1),
                                   "wall_us_per_item": round(median(v[1] for v in values), 1)}
                           for label, values in samples.items()}
    # What the policy adds per item on the hot path is its decide() (a held sender also costs a
    # hold, which is access, not delivery); the two store steps cross-check it, within their noise.
    out["admit_difference_us_per_item"] = round(out["admit_access_policy"]["cpu_us_per_item"]
                                                - out["admit_tenant_gate"]["cpu_us_per_item"], 1)
    out["confirmation_cpu_us_per_item"] = round(out["confirm_admit_pending"]["cpu_us_per_item"]
                                                + out["confirm_worker"]["cpu_us_per_item"], 1)
    out["decide_us"] = decide_us
    out["access_policy_cpu_us_per_item"] = decide_us.get("tenant")
    out["confirmed"] = confirmed
    out["items_per_round"] = per
    return out


def _decide(settings: Any, events: list[Event], workdir: Path) -> dict[str, float]:
    """`AccessPolicy.decide` per event, in each mode; `allowlist` lists the senders, `pairing` nobody."""
    senders = sorted({e.sender_id for e in events})
    out = {}
    for mode in MODES:
        allow = senders if mode == "allowlist" else []
        policy = AccessPolicy(settings.model_copy(update={"inbound_policy": mode, "allow": allow}),
                              store=AccessStore(workdir / f"gates-decide-{mode}.db"))
        try:
            decisions = {policy.decide(e) for e in events}
            times = []
            for _ in range(5):
                began = time.perf_counter()
                for event in events:
                    policy.decide(event)
                times.append((time.perf_counter() - began) / len(events))
            out[mode] = round(median(times) * 1e6, 2)
            out[f"{mode}_decision"] = "/".join(sorted(decisions))  # type: ignore[assignment]
        finally:
            policy.close()
    return out


def figures(r: dict[str, Any]) -> dict[str, Any]:
    """The flat figures of this block (NaN where the run did not measure it)."""
    g = r.get("gates") or {}
    d = g.get("decide_us") or {}
    nan = float("nan")
    out = {"access_policy_cpu_us_per_item": g.get("access_policy_cpu_us_per_item", nan),
           "trust_confirmation_cpu_us_per_item": g.get("confirmation_cpu_us_per_item", nan)}
    for mode in MODES:
        out[f"access_policy_decide_{mode}_us"] = d.get(mode, nan)
    return out


def lines(g: dict[str, Any]) -> list[str]:
    """report.table's lines for this block."""
    if not g:
        return []
    if "skipped" in g:
        return [f"   trust confirmation and access policy: skipped: {g['skipped']}"]

    def cpu(label: str) -> Any:
        return g.get(label, {}).get("cpu_us_per_item")

    d = g.get("decide_us", {})
    return [
        "   access policy, per item: decide() " + ", ".join(f"{m} {d.get(m)} us ({d.get(f'{m}_decision')})"
                                                          for m in MODES if m in d)
        + f"; intake store step {cpu('admit_tenant_gate')} us CPU with the tenant gate, "
        f"{cpu('admit_access_policy')} us with AccessPolicy (tenant), for comparison",
        f"   trust confirmation, per sponsor item (Graph's GET answered from memory): "
        f"{g.get('confirmation_cpu_us_per_item')} us CPU = kept pending {cpu('confirm_admit_pending')} + "
        f"confirmed and stored {cpu('confirm_worker')} ({g.get('confirmed')} confirmed)",
    ]
