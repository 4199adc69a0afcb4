"""Team channels with a hub shared by two machines: the manager subscribes the joined channel to the
hub, the follower learns that subscription from Graph (it makes none), and each channel mention is
stored once, from the hub, on whichever machine owns its partition; none is polled."""

from __future__ import annotations

from collections import Counter

import anyio

from agentseat.sandbox.app import Sandbox
from tests.channels._sandbox import AGENT, GRACE, make_team, post
from tests.eventhub.test_eventhub_machines import machines, owned, start  # noqa: F401 - the fixture
from tests.runtime.test_runtime import upn, wait_for


async def test_a_follower_learns_the_channel_subscription_and_reads_its_posts_from_the_hub(
        sandbox: Sandbox, machines: tuple[dict[str, str], dict[str, str]]) -> None:  # noqa: F811
    env_a, env_b = ({**env, "AGENTSEAT_GROUP_POLICY": "all"} for env in machines)
    team = await make_team(sandbox, "Shared team", GRACE, upn(sandbox, "agent_user"))
    async with anyio.create_task_group() as tg:
        a = await start(tg, env_a)
        await wait_for(lambda: a.runtime.status.source == "eventhub", timeout=60)  # a manages, channel included
        b = await start(tg, env_b)
        await wait_for(lambda: b.runtime.status.source == "eventhub-follower", timeout=60)
        await wait_for(lambda: len(owned(a)) == 2 and len(owned(b)) == 2, timeout=60)
        assert b.runtime.channel_manager is not None
        await wait_for(lambda: bool(b.runtime.channel_manager.covered()), timeout=60)  # learned, so not polled
        channel_subs = [s for s in sandbox.tenant.subscriptions.values() if "/channels/" in s.resource]
        assert len(channel_subs) == 1  # the follower made none
        asked = [await post(sandbox, GRACE, team, f"@{AGENT} question {i}", mentions=[AGENT]) for i in range(8)]
        stored = lambda: Counter(e.message_id for e in a.events + b.events if e.kind == "channel")  # noqa: E731
        await wait_for(lambda: set(stored()) >= set(asked), timeout=90)
        assert all(stored()[m] == 1 for m in asked), stored()  # one machine stored each
        mine = [e for e in b.events if e.message_id in asked]
        assert mine, "the follower read none of the channel's posts from its partitions"
        assert {e.source for e in a.events + b.events if e.message_id in asked} == {"eventhub"}
        tg.cancel_scope.cancel()
