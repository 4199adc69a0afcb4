"""Two machines on one hub (Blob checkpoints on Azurite): a lifecycle notification that lands on the
follower's partition is acted on by the lease holder only (eventhub/forward.py). The sandbox's control API
makes Graph send it; the sandbox's request counters show the one PATCH or recreation it cost, and the
machines' lifecycle counters show who forwarded and who acted. A team channel's subscription (on the hub
too) goes to the holder's channel gate the same way. One machine on the local store (always the holder)
acts on what it reads itself, with nothing in between."""

from __future__ import annotations

from typing import Any

import anyio

from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.eventhubs.bridge import send_validation
from tests.channels._sandbox import GRACE, make_team
from tests.eventhub.test_eventhub_machines import machines, owned, start  # noqa: F401 (the fixture)
from tests.runtime.test_runtime import Running, control, upn, wait_for
from tests.subscriptions._lifecycle import CREATE, PATCH, live, requests

GET_ONE = "GET /subscriptions/{sub_id}"


async def partition_counts(sandbox: Sandbox) -> dict[str, int]:
    """Events per partition, as `GET /_sandbox/eventhubs` shows them."""
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    return {p["id"]: p["lastSequenceNumber"] for p in info["hubs"][0]["partitions"]}


async def steer(sandbox: Sandbox, partitions: set[str]) -> None:
    """Make the hub's next event land on one of `partitions`. Graph sends without a partition key, so the
    sandbox's hub goes round-robin (sandbox/eventhubs/store.py); Graph's own validation message, which
    every reader ignores (consumer.py), moves it on one partition at a time."""
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    order = [p["id"] for p in info["hubs"][0]["partitions"]]
    for _ in range(len(order)):
        before = await partition_counts(sandbox)
        url = info["hubs"][0]["notificationUrl"]
        assert sandbox.portal.call(send_validation, sandbox, url) is None  # type: ignore[attr-defined]
        after = await partition_counts(sandbox)
        landed = next(p for p in order if after[p] != before[p])
        if order[(order.index(landed) + 1) % len(order)] in partitions:
            return
    raise AssertionError(f"no round-robin slot in {partitions}")


async def on_follower(sandbox: Sandbox, follower: Running, action: str, subscription_id: str) -> None:
    """Graph sends the lifecycle event (`/_sandbox/subscriptions/{id}/{action}`) to one of the follower's partitions."""
    mine = owned(follower)
    await steer(sandbox, mine)
    before = await partition_counts(sandbox)
    await control(sandbox, "POST", f"/_sandbox/subscriptions/{subscription_id}/{action}")
    with anyio.fail_after(30):  # a safety bound: the sandbox's delivery worker sends it shortly
        while (after := await partition_counts(sandbox)) == before:
            await anyio.sleep(0.05)
    landed = {p for p in after if after[p] != before[p]}
    assert landed <= mine, (landed, mine)


def held(running: Running) -> Any:
    assert running.runtime.manager is not None
    return running.runtime.manager.known


def actions(running: Running) -> Any:
    assert running.runtime.manager is not None
    return running.runtime.manager.counters.actions


async def test_a_lifecycle_event_the_follower_reads_is_acted_on_by_the_holder_only(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:  # noqa: F811
    env_a, env_b = machines
    async with anyio.create_task_group() as tg:
        a = await start(tg, env_a)
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)  # a holds the lease
        b = await start(tg, env_b)
        await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
        await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
        teams, mail = live(sandbox, "teams"), live(sandbox, "mail")
        patches, creates, checks = requests(sandbox, PATCH), requests(sandbox, CREATE), requests(sandbox, GET_ONE)
        missed_reads = a.runtime.poller.counters.by_reason.get("missed", 0)

        # reauthorizationRequired: one PATCH, by the holder.
        await on_follower(sandbox, b, "reauthorize", teams.id)
        await wait_for(lambda: actions(b)["forwarded"] == 1, timeout=60)
        await wait_for(lambda: actions(a)["renewed"] == 1, timeout=60)
        await wait_for(lambda: requests(sandbox, PATCH) == patches + 1, timeout=60)
        await wait_for(lambda: actions(a)["relayed"] == 1, timeout=60)  # counted once its marker is written

        # missed (mail): one resync, on the holder.
        await on_follower(sandbox, b, "missed", mail.id)
        await wait_for(lambda: actions(a)["resyncs_mail"] == 1, timeout=60)
        await wait_for(lambda: a.runtime.poller.counters.by_reason.get("missed", 0) == missed_reads + 1, timeout=60)

        # subscriptionRemoved (Graph did remove it): checked and recreated once, by the holder.
        await on_follower(sandbox, b, "remove", teams.id)
        await wait_for(lambda: actions(a)["removal_confirmed"] == 1, timeout=60)
        await wait_for(lambda: requests(sandbox, CREATE) == creates + 1, timeout=60)
        assert live(sandbox, "teams").id != teams.id
        await wait_for(lambda: live(sandbox, "teams").id in held(a), timeout=60)
        assert requests(sandbox, GET_ONE) == checks + 1

        # The follower forwarded all three and acted on none: no PATCH, no recreation, no resync.
        assert actions(b)["forwarded"] == 3
        for key in ("renewed", "removal_checks", "removal_confirmed", "resyncs_mail", "resyncs_teams", "relayed"):
            assert actions(b)[key] == 0, key
        assert b.runtime.poller.counters.by_reason.get("missed", 0) == 0
        assert requests(sandbox, PATCH) == patches + 1
        assert len(sandbox.tenant.subscriptions) == 2
        tg.cancel_scope.cancel()


async def test_a_channel_subscriptions_lifecycle_event_on_the_follower_is_acted_on_by_the_holder(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:  # noqa: F811
    env_a, env_b = ({**env, "AGENTSEAT_GROUP_POLICY": "all"} for env in machines)
    await make_team(sandbox, "Shared team", GRACE, upn(sandbox, "agent_user"))
    async with anyio.create_task_group() as tg:
        a = await start(tg, env_a)
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)  # a manages, channel included
        b = await start(tg, env_b)
        await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
        await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
        channels_a, channels_b = a.runtime.channel_manager, b.runtime.channel_manager
        assert channels_a is not None and channels_b is not None
        await wait_for(lambda: bool(channels_b.covered()), timeout=60)  # b learned the channel's subscription
        (channel,) = [s for s in sandbox.tenant.subscriptions.values() if "/channels/" in s.resource]
        patches = requests(sandbox, PATCH)

        await on_follower(sandbox, b, "reauthorize", channel.id)
        await wait_for(lambda: actions(b)["forwarded"] == 1, timeout=60)
        await wait_for(lambda: channels_a.counters.actions["renewed"] == 1, timeout=60)  # the channel's gate, on a
        await wait_for(lambda: requests(sandbox, PATCH) == patches + 1, timeout=60)
        assert channels_b.counters.actions["renewed"] == 0 and actions(b)["renewed"] == 0
        assert actions(a)["renewed"] == 0  # the chats' and mail's gate was not asked
        tg.cancel_scope.cancel()


async def test_one_machine_on_the_local_store_acts_on_lifecycle_events_itself(
        sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    info = await control(sandbox, "GET", "/_sandbox/eventhubs")
    env = {**agent_env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_TUNNEL": "none",
           "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"], "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"],
           "AGENTSEAT_EVENTHUB_ENDPOINT": info["endpoint"]}  # AGENTSEAT_CHECKPOINT_STORE: local, the default
    async with anyio.create_task_group() as tg:
        alone = await start(tg, env)
        await wait_for(lambda: alone.runtime.status.source == "eventhub", timeout=60)
        await wait_for(lambda: len(owned(alone)) == len(info["hubs"][0]["partitions"]), timeout=60)
        patches = requests(sandbox, PATCH)
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{live(sandbox, 'teams').id}/reauthorize")
        await wait_for(lambda: actions(alone)["renewed"] == 1, timeout=60)
        await wait_for(lambda: requests(sandbox, PATCH) == patches + 1, timeout=60)
        assert actions(alone)["forwarded"] == 0 and actions(alone)["relayed"] == 0  # no store in between
        tg.cancel_scope.cancel()
