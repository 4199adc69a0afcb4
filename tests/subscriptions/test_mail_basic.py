"""Mail subscribes without resource data: measured against the rich alternative.

A rich mail notification never carries the body (outlook-change-notifications-overview),
so the runtime reads every message from Graph either way. The measurement below runs
both choices over the sandbox and compares what they cost: Graph reads per message
(the same: one) and renewals per week (the lifetime Graph grants, renewed by the
manager's own rule). The README's "Mail subscriptions: why basic" quotes these numbers;
`pytest -s` prints them.
"""

from __future__ import annotations

import math

import pytest

from agentseat.sandbox.app import Sandbox
from agentseat.subscriptions import manager as manager_module
from agentseat.subscriptions.specs import desired_specs, mail_rich_spec
from tests.runtime.test_runtime import control, free_port, upn
from tests.subscriptions._lifecycle import CREATE, live, requests, running, wait_for

FETCH = "GET /me/messages/{message_id}"
WEEK = 7 * 24 * 3600
MESSAGES = 5


def renewals_per_week(granted_seconds: float, minutes: int, renew_fraction: float) -> int:
    """Walk two weeks minute by minute with the manager's rule (renew when less than
    `renew_fraction` of the lifetime is left; each renewal gets what Graph granted) and
    count the second week's renewals, once the first creation no longer counts."""
    expires, renewals = granted_seconds, 0
    for now in range(0, 2 * WEEK, 60):
        if expires - now < minutes * 60 * renew_fraction:
            renewals += now >= WEEK
            expires = now + granted_seconds
    return renewals


async def _measure(sandbox: Sandbox, env: dict[str, str], rich: bool,
                   monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    if rich:
        monkeypatch.setattr(manager_module, "desired_specs",
                            lambda settings: [desired_specs(settings)[0], mail_rich_spec()])
    async with running(env) as rt:
        sub = live(sandbox, "mail")
        assert sub.include_resource_data is rich
        granted = sub.expiration - sandbox.clock.now()
        fetches = requests(sandbox, FETCH)
        sent = []
        for n in range(MESSAGES):
            posted = await control(sandbox, "POST", "/_sandbox/mail", {
                "from": upn(sandbox, "colleague1"), "to": upn(sandbox, "agent_user"),
                "subject": f"figures {n}", "body": f"the body of message {n}"})
            sent.append(posted["message_id"])
        inbox = rt.runtime.inbox
        await wait_for(lambda: {e.message_id for e in inbox.read(0, 100)} >= set(sent))
        events = [e for e in inbox.read(0, 1000) if e.message_id in sent]
        assert sorted(e.message_id for e in events) == sorted(sent), "each message exactly once"
        assert all(e.text.startswith("the body of message") and e.source == "webhook" for e in events)
        spec = rt.manager._spec("mail")
        fraction = rt.runtime.settings.renew_fraction
        return {"lifetime_minutes": round(granted / 60), "gets_per_message": (requests(sandbox, FETCH) - fetches)
                / MESSAGES, "renewals_per_week": renewals_per_week(granted, spec.minutes, fraction)}


async def test_basic_mail_is_delivered_exactly_once_with_its_body_fetched_from_graph(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    basic = await _measure(sandbox, agent_env, False, monkeypatch)
    assert basic["gets_per_message"] == 1  # a basic notification is a claim: Graph is read for the message
    assert basic["lifetime_minutes"] == 10080
    assert basic["renewals_per_week"] == 2  # renewed at half life: every 3.5 days
    async with running(agent_env) as rt:
        assert rt.runtime.facts.get("mail_subscription") == "basic"
        assert rt.manager.states["mail"].rich is False


async def test_rich_mail_costs_the_same_reads_and_seven_times_the_renewals(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    rich = await _measure(sandbox, agent_env, True, monkeypatch)
    monkeypatch.undo()
    sandbox.portal.call(lambda: sandbox.tenant.subscriptions.clear())  # type: ignore[attr-defined]
    basic = await _measure(sandbox, agent_env, False, monkeypatch)
    print(f"\nmail subscription  lifetime (min)  Graph GETs/message  renewals/week\n"
          f"rich               {rich['lifetime_minutes']:>14}  {rich['gets_per_message']:>18}  "
          f"{rich['renewals_per_week']:>13}\n"
          f"basic              {basic['lifetime_minutes']:>14}  {basic['gets_per_message']:>18}  "
          f"{basic['renewals_per_week']:>13}")
    assert rich["gets_per_message"] == basic["gets_per_message"] == 1
    assert rich["lifetime_minutes"] == 1440 and basic["lifetime_minutes"] == 10080
    assert rich["renewals_per_week"] == 14 and basic["renewals_per_week"] == 2
    assert math.isclose(rich["renewals_per_week"] / basic["renewals_per_week"], 7)


async def test_a_rich_mail_subscription_from_an_earlier_version_is_replaced_by_a_basic_one(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "desired_specs",
                        lambda settings: [desired_specs(settings)[0], mail_rich_spec()])
    port = str(free_port())  # the same public URL across the upgrade: only the payload choice changed
    async with running(agent_env, webhook_port=port):
        old = live(sandbox, "mail")
        assert old.include_resource_data
    monkeypatch.undo()
    creates = requests(sandbox, CREATE)
    async with running(agent_env, webhook_port=port) as rt:
        new = live(sandbox, "mail")  # exactly one: the rich one was deleted, not left beside it
        assert new.id != old.id and not new.include_resource_data
        assert rt.manager.states["mail"].id == new.id and rt.manager.known[new.id].rich is False
    assert requests(sandbox, CREATE) == creates + 1
