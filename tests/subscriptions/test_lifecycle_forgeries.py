"""Forged lifecycle notifications, sent with the genuine clientState, against a live runtime.

Issue 10: one captured POST gives an attacker a subscription's clientState. Its
lifecycle events are then claims the runtime checks with Graph, and a flood of
them costs at most one running and one pending resync per kind, and at most one
PATCH per subscription per 10 minutes. The subscriptions stay live and renewed.
"""

from __future__ import annotations

import pytest

from agentseat.graph.times import parse_graph_time
from agentseat.sandbox.app import Sandbox
from agentseat.subscriptions import lifecycle
from agentseat.subscriptions import manager as manager_module
from agentseat.subscriptions.specs import expiry
from tests.runtime.test_runtime import control

from ._lifecycle import (
    CHAT_LIST,
    CREATE,
    GET_ONE,
    PATCH,
    live,
    mail_delta_reads,
    reads,
    requests,
    running,
    wait_for,
)


@pytest.fixture(autouse=True)
def _short_spacing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pending run waits out the spacing after the first; keep the tests quick.
    monkeypatch.setattr(lifecycle, "LIFECYCLE_SPACING_SECONDS", 0.2)


async def test_forged_subscription_removed_is_refuted_and_the_subscription_still_renewed(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        teams = live(sandbox, "teams")
        creates, checks = requests(sandbox, CREATE), requests(sandbox, GET_ONE)

        assert await rt.post([rt.item(sandbox, "subscriptionRemoved") for _ in range(20)]) == 202
        for _ in range(5):
            assert await rt.post([rt.item(sandbox, "subscriptionRemoved")]) == 202
        await rt.settled()

        assert 1 <= requests(sandbox, GET_ONE) - checks <= 2  # checked with Graph, coalesced
        assert requests(sandbox, CREATE) == creates  # nothing created: no 409, no duplicate
        assert rt.manager.counters.dropped["removal_refuted"] >= 1
        assert live(sandbox, "teams").id == teams.id == rt.manager.states["teams"].id
        assert rt.manager.states["teams"].state == "active"

        before = live(sandbox, "teams").expiration
        await rt.manager.renew("teams", reason="test")
        assert live(sandbox, "teams").expiration > before  # still ours, still renewed


async def test_genuine_removal_recreates_with_a_new_client_state_and_refuses_the_old_one(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        old = live(sandbox, "teams")
        old_secret = str(old.client_state)
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{old.id}/remove")  # Graph's own removal
        await wait_for(lambda: rt.manager.states["teams"].id not in ("", old.id))
        await rt.settled()
        new = live(sandbox, "teams")
        assert new.id == rt.manager.states["teams"].id
        assert new.client_state and new.client_state != old_secret
        assert new.client_state != live(sandbox, "mail").client_state  # each its own
        assert rt.manager.counters.actions["removal_confirmed"] == 1

        # The old secret verifies nothing: not for the new id, not for the removed one.
        received = sum(rt.manager.counters.received.values())
        patches = requests(sandbox, PATCH)
        for item in (rt.item(sandbox, "reauthorizationRequired", client_state=old_secret),
                     rt.item(sandbox, "reauthorizationRequired", subscription=old.id, client_state=old_secret),
                     rt.item(sandbox, "subscriptionRemoved", subscription=old.id, client_state=old_secret)):
            assert await rt.post([item]) == 202
        assert sum(rt.manager.counters.received.values()) == received  # refused before the manager
        assert old.id not in rt.manager.known
        # The new secret does.
        assert await rt.post([rt.item(sandbox, "reauthorizationRequired")]) == 202
        assert rt.manager.counters.received["reauthorizationRequired"] == 1
        await rt.settled()
        assert requests(sandbox, PATCH) == patches + 1


async def test_a_conflict_on_create_adopts_the_live_subscription_and_renews_it(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        gone = live(sandbox, "teams")
        gone_item = rt.item(sandbox, "subscriptionRemoved")
        spec = rt.manager.specs[0]
        assert spec.kind == "teams"
        # Graph lost ours and holds another for the same resource, at our URL, due for
        # renewal: as after a create whose answer never reached us.
        graph = rt.runtime.graph
        await graph.delete(f"/subscriptions/{gone.id}")
        cert = rt.runtime.keys.load(rt.runtime.settings.cert_thumbprint)
        body = spec.body(notification_url=f"{rt.manager.url}/notifications",
                         lifecycle_url=f"{rt.manager.url}/lifecycle", client_state="other-secret-" + "x" * 20,
                         certificate_b64=cert.der_b64, certificate_id=cert.sha1_thumbprint)
        body["expirationDateTime"] = expiry(60)
        other = await graph.post("/subscriptions", body)
        creates, patches = requests(sandbox, CREATE), requests(sandbox, PATCH)

        assert await rt.post([gone_item]) == 202
        await rt.settled()

        assert requests(sandbox, CREATE) == creates + 1  # one try, answered 409
        state = rt.manager.states["teams"]
        assert (state.id, state.state) == (other["id"], "active")
        assert rt.manager.counters.actions["adopted"] == 1
        assert requests(sandbox, PATCH) == patches + 1  # it was due: renewed on adoption
        assert live(sandbox, "teams").expiration > parse_graph_time(other["expirationDateTime"]) + 3600
        assert len(sandbox.tenant.subscriptions) == 2
        # Its notifications verify with its own secret.
        assert rt.manager.known[other["id"]].client_state == "other-secret-" + "x" * 20


async def test_a_flood_of_forged_missed_costs_at_most_two_resyncs_per_kind(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        chats, mail = reads(sandbox, CHAT_LIST), mail_delta_reads(sandbox)
        items = [rt.item(sandbox, "missed", kind=k) for k in ("teams", "mail") for _ in range(20)]
        assert await rt.post(items) == 202
        await rt.settled()

        assert 1 <= reads(sandbox, CHAT_LIST) - chats <= 2
        assert 1 <= mail_delta_reads(sandbox) - mail <= 2
        counters = rt.manager.counters
        assert counters.received["missed"] == 40
        assert counters.actions["resyncs_teams"] <= 2 and counters.actions["resyncs_mail"] <= 2
        assert counters.dropped["resync_coalesced"] >= 36


async def test_a_flood_of_forged_reauthorization_costs_one_patch(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with running(agent_env) as rt:
        patches = requests(sandbox, PATCH)
        assert await rt.post([rt.item(sandbox, "reauthorizationRequired") for _ in range(20)]) == 202
        for _ in range(5):
            assert await rt.post([rt.item(sandbox, "reauthorizationRequired")]) == 202
        await rt.settled()

        assert requests(sandbox, PATCH) == patches + 1
        assert rt.manager.counters.dropped["reauthorize_rate_limited"] >= 1
        assert requests(sandbox, "POST /subscriptions/{sub_id}/reauthorize") == 0
        assert sandbox.stats.notifications["reauthorize_and_patch_within_10min"] == 0


async def test_a_recreation_graph_refuses_is_retried_until_something_is_renewed(
        sandbox: Sandbox, agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "RETRY_CREATE_SECONDS", 0.5)
    monkeypatch.setattr(manager_module, "MIN_CHECK_SECONDS", 0.2)
    async with running(agent_env, graph_deadline_seconds="1") as rt:
        old = live(sandbox, "teams")
        await control(sandbox, "POST", "/_sandbox/faults",
                      {"graph": [{"route": CREATE, "rate": 1.0, "status": 503, "retry_after": 0.05}]})
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{old.id}/remove")
        await wait_for(lambda: rt.manager.states["teams"].state == "refused")
        assert old.id not in rt.manager.known
        await control(sandbox, "DELETE", "/_sandbox/faults")

        await wait_for(lambda: rt.manager.states["teams"].state == "active")
        new = live(sandbox, "teams")
        assert rt.manager.states["teams"].id == new.id != old.id
        before = new.expiration
        await rt.manager.renew("teams", reason="test")
        assert live(sandbox, "teams").expiration > before
