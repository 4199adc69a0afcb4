"""Attack kinds: floods of forged lifecycle events under a captured clientState and a live token.

Whoever holds one genuine POST can post `subscriptionRemoved`, `missed` and
`reauthorizationRequired` for that subscription as often as they like, each with
checks that pass. The runtime must check them, not obey them (issue 10, point 4):

- `missed`: at most one resync running and one pending per kind, however many arrive;
- `reauthorizationRequired`: at most one PATCH per subscription per 10 minutes;
- `subscriptionRemoved`: Graph is asked first (`GET /subscriptions/{id}`, one running
  and one pending per kind); a subscription that still exists is kept, never recreated;
- and through all of it the subscriptions stay live, held and renewed by the runtime,
  and genuine deliveries are stored.

Each kind counts the Graph requests its flood causes (the sandbox's counters, diffed
around the flood and the coalesced work after it) and judges them against those bounds.
A bound broken is a leak: a forged lifecycle event acted on beyond what it may cost.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anyio

from ._attack_target import Outcome, Target, count_log, genuine_deliveries, graph_diff, log_end, log_since, post, settle

#: Forged lifecycle POSTs per subscription and wave.
FLOOD = 20
#: Coalesced lifecycle runs of one kind start at least 10 s apart (subscriptions/lifecycle.py): the
#: pending run is counted only if the count waits that long.
SPACING_WAIT = 12.0
#: Runs a flood may cost per kind: one running and one pending.
RUNS = 2
SUB_GET = "GET /subscriptions/{sub_id}"
RENEWALS = ("PATCH /subscriptions/{sub_id}", "POST /subscriptions/{sub_id}/reauthorize")
CHURN = ("POST /subscriptions", "DELETE /subscriptions/{sub_id}")


def _kind_of(t: Target, sub_id: str) -> str:
    return "mail" if sub_id == t.mail_sub else "teams"


async def _flood(s: aiohttp.ClientSession, t: Target, event: str, sub_id: str, n: int, case: str) -> Outcome:
    """`n` lifecycle POSTs at once for one subscription: its genuine clientState, a live token each."""
    statuses: dict[int | None, int] = {}

    async def one() -> None:
        item = t.item(lifecycle=event, subscription=sub_id)
        o = await post(s, t, case, t.body([item]), path="/lifecycle")
        statuses[o.status] = statuses.get(o.status, 0) + 1

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    o = Outcome(case, status=202 if set(statuses) == {202} else max((k for k in statuses if k is not None),
                                                                     default=None))
    if None in statuses:
        o.error = f"{statuses[None]} connections failed"
    o.note = f"{n} POSTs: statuses {statuses}"
    return o


def _health(t: Target) -> str:
    """A problem if the runtime no longer holds a live subscription of some kind (so nothing renews it)."""
    live = t.subscriptions()
    held = t.runtime_subscriptions()
    for kind in ("teams", "mail"):
        state = held.get(kind) or {}
        if state.get("state") != "active" or state.get("id") not in live:
            return (f"leak: {kind} subscription no longer held and renewed (runtime: {state.get('state')}, "
                    f"{'live' if state.get('id') in live else 'not live'} at Graph, error {state.get('error')!r})")
    return ""


async def _after(t: Target, out: list[Outcome], tag: str) -> None:
    """Subscriptions still held and live; a genuine DM and mail still delivered and stored."""
    if problem := _health(t):
        out[0].problem = out[0].problem or problem
    keys, problem = await genuine_deliveries(t, tag)
    out.append(Outcome(f"genuine_delivery_after_{tag}", status=202, problem=problem, note=keys[0]))
    out.append(Outcome(f"genuine_mail_after_{tag}", status=202, note=keys[1]))


def _targets(t: Target, quick: bool, first: str) -> list[str]:
    subs = [t.mail_sub, t.teams_sub] if first == "mail" else [t.teams_sub, t.mail_sub]
    return subs[:1] if quick else subs


async def lifecycle_flood_missed(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """`missed` x20 per subscription at once: at most one running and one pending resync per kind."""
    await settle(t)
    offset, before = log_end(t), t.graph_requests()
    out = [await _flood(s, t, "missed", sub, FLOOD, f"missed_x{FLOOD}_{_kind_of(t, sub)}")
           for sub in _targets(t, quick, "mail")]
    waited = await settle(t, at_least=SPACING_WAIT, quiet=2.0)
    caused = graph_diff(before, t.graph_requests())
    lines = log_since(t, offset)
    resyncs = {}
    for o, sub in zip(out, _targets(t, quick, "mail")):
        kind = _kind_of(t, sub)
        resyncs[kind] = runs = count_log(lines, "resync_done", kind=kind, reason="missed")
        o.note += f"; resyncs of {kind}: {runs}"
        if runs > RUNS:
            o.problem = f"leak: {runs} {kind} resyncs from one flood (bound {RUNS}: one running, one pending)"
    out[0].note += f"; Graph requests caused ({waited:.0f} s): {json.dumps(caused)}"
    t.costs["lifecycle_flood_missed"] = {
        "sent": f"{FLOOD * len(out)} POSTs ({FLOOD} per subscription)", "graph": caused,
        "outcome": f"resyncs {json.dumps(resyncs)} (bound {RUNS} per kind)"}
    await _after(t, out, "missed_flood")
    return out


async def lifecycle_flood_reauthorize(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """`reauthorizationRequired` x20 per subscription, twice: at most one PATCH per subscription."""
    await settle(t)
    before, subs_before = t.graph_requests(), t.subscriptions()
    targets = _targets(t, quick, "teams")
    out = []
    for wave in (1, 2):  # the second wave comes within the 10 minutes: it may cost nothing
        for sub in targets:
            out.append(await _flood(s, t, "reauthorizationRequired", sub, FLOOD,
                                    f"reauthorize_x{FLOOD}_{_kind_of(t, sub)}_wave{wave}"))
        await settle(t, quiet=1.5)
    caused = graph_diff(before, t.graph_requests())
    renewals = sum(caused.get(r, 0) for r in RENEWALS)
    subs_after = t.subscriptions()
    touched = [sid for sid in targets if sid in subs_after and sid in subs_before and (
        subs_after[sid]["last_patch"], subs_after[sid]["last_reauthorize"]) != (
        subs_before[sid]["last_patch"], subs_before[sid]["last_reauthorize"])]
    # Each renewal sets its subscription's last_patch (or last_reauthorize): more requests than
    # subscriptions touched means one of them was renewed twice.
    out[0].note += (f"; renewals {renewals} for {len(targets)} subscription(s); "
                    f"Graph requests caused: {json.dumps(caused)}")
    if renewals > len(touched) or renewals > len(targets):
        out[0].problem = (f"leak: {renewals} PATCH/reauthorize requests for {len(targets)} subscription(s) "
                          f"in 10 minutes (bound: one per subscription)")
    elif any(caused.get(r, 0) for r in CHURN):
        out[0].problem = f"leak: subscriptions created or deleted ({json.dumps(caused)})"
    t.costs["lifecycle_flood_reauthorize"] = {
        "sent": f"{FLOOD * len(out)} POSTs ({FLOOD} per subscription, 2 waves)", "graph": caused,
        "outcome": f"{renewals} renewal(s) for {len(targets)} subscription(s) (bound 1 each per 10 min)"}
    await _after(t, out, "reauthorize_flood")
    return out


async def lifecycle_flood_removed(s: aiohttp.ClientSession, t: Target, quick: bool) -> list[Outcome]:
    """`subscriptionRemoved` x20 per subscription at once: checked with Graph, never obeyed blindly.

    The subscriptions still exist, so the runtime may ask (one running and one pending
    check per kind) but must not create, delete or let go of anything.
    """
    await settle(t)
    offset, before, ids_before = log_end(t), t.graph_requests(), set(t.subscriptions())
    targets = _targets(t, quick, "teams")
    out = [await _flood(s, t, "subscriptionRemoved", sub, FLOOD, f"removed_x{FLOOD}_{_kind_of(t, sub)}")
           for sub in targets]
    waited = await settle(t, at_least=SPACING_WAIT, quiet=2.0)
    caused = graph_diff(before, t.graph_requests())
    lines = log_since(t, offset)
    refuted = count_log(lines, "lifecycle_removal_refuted")
    out[0].note += (f"; checks (GET /subscriptions/id) {caused.get(SUB_GET, 0)}, refuted {refuted}; "
                    f"Graph requests caused ({waited:.0f} s): {json.dumps(caused)}")
    if any(caused.get(r, 0) for r in CHURN):
        out[0].problem = f"leak: a live subscription recreated on a forged removal ({json.dumps(caused)})"
    elif caused.get(SUB_GET, 0) > RUNS * len(targets):
        out[0].problem = f"leak: {caused[SUB_GET]} removal checks (bound {RUNS} per kind)"
    elif set(t.subscriptions()) != ids_before:
        out[0].problem = "leak: the live subscriptions changed on a forged removal"
    t.costs["lifecycle_flood_removed"] = {
        "sent": f"{FLOOD * len(out)} POSTs ({FLOOD} per subscription)", "graph": caused,
        "outcome": f"{caused.get(SUB_GET, 0)} checks, {refuted} refuted, subscriptions unchanged "
                   f"(bound {RUNS} checks per kind)" if not out[0].problem else out[0].problem}
    await _after(t, out, "removed_flood")
    return out


def subscriptions_view(live: list[Any]) -> dict[str, dict[str, Any]]:
    """The sandbox's live subscriptions as the lifecycle kinds read them (by id)."""
    return {s.id: {"kind": "teams" if "chats" in s.resource.lower() else "mail", "expiration": s.expiration,
                   "last_patch": s.last_patch, "last_reauthorize": s.last_reauthorize} for s in live}
