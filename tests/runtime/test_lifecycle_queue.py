"""The lifecycle hand-off behind a real webhook: bounded, coalesced, never a 500.

The webhook and its pipeline run on loopback with genuine clientStates; the
lifecycle gate's jobs are recorders, so what reaches them is exactly what the
gate let through.
"""

from __future__ import annotations


import anyio

from agentseat.graph.subscription import KnownSubscription
from agentseat.subscriptions.lifecycle import LifecycleGate

from ._notify import (
    MAIL_CLIENT_STATE,
    MAIL_SUB,
    TEAMS_SUB,
    World,
    body,
    lifecycle_item,
    serving,
)


JSON = {"Content-Type": "application/json"}


class Jobs:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.block_removal = False

    async def removed(self, kind: str, reason: str) -> None:
        self.calls.append(("removed", kind, reason))
        self.entered.set()
        if self.block_removal:
            await self.release.wait()

    async def reauthorize(self, kind: str, reason: str) -> None:
        self.calls.append(("reauthorize", kind, reason))

    async def resync(self, kind: str, reason: str) -> None:
        self.calls.append(("resync", kind, reason))


def gate_for(world: World, jobs: Jobs, **options: float) -> LifecycleGate:
    gate = LifecycleGate(holds=lambda k: k.id == TEAMS_SUB, check_removed=jobs.removed, reauthorize=jobs.reauthorize,
                         resync=jobs.resync, spacing=0.0, **options)  # type: ignore[arg-type]

    async def on_lifecycle(known: KnownSubscription, event: str) -> None:
        gate.offer(known, event)

    world.replace_pipeline(on_lifecycle=on_lifecycle)
    return gate


async def test_a_full_lifecycle_queue_answers_202_and_counts_the_drop(world: World) -> None:
    jobs = Jobs()
    gate = gate_for(world, jobs, queue_size=2)
    events = ["reauthorizationRequired", "missed", "subscriptionRemoved", "missed", "reauthorizationRequired"]
    async with serving(world) as (base, server):
        # The worker is not running yet: the queue fills, and the extra is dropped.
        for event in events:
            async with world.session.post(f"{base}/lifecycle", data=body([lifecycle_item(event)]), headers=JSON) as response:
                assert response.status == 202
        # Lifecycle events for a subscription the manager does not hold take no queue space.
        not_held = lifecycle_item("subscriptionRemoved", subscription=MAIL_SUB, client_state=MAIL_CLIENT_STATE)
        async with world.session.post(f"{base}/lifecycle", data=body([not_held]), headers=JSON) as response:
            assert response.status == 202
        assert (server.stats.failures, server.stats.lifecycle) == (0, 6)

    assert gate.counters.dropped == {"queue_full": 3, "not_held": 1}
    assert sum(gate.counters.received.values()) == 6
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.run)
        with anyio.fail_after(30):
            while not gate.idle():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert jobs.calls == [("reauthorize", "teams", "reauthorize"), ("resync", "teams", "missed")]


async def test_a_flood_costs_one_running_and_one_pending_job_per_kind(world: World) -> None:
    jobs = Jobs()
    jobs.block_removal = True
    gate = gate_for(world, jobs)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.run)
        async with serving(world) as (base, _):
            async with world.session.post(f"{base}/lifecycle",
                                          data=body([lifecycle_item("subscriptionRemoved")]), headers=JSON) as response:
                assert response.status == 202
            with anyio.fail_after(30):
                await jobs.entered.wait()  # the first check runs (and is held there)
            for _ in range(10):
                async with world.session.post(f"{base}/lifecycle",
                                              data=body([lifecycle_item("subscriptionRemoved")]), headers=JSON) as response:
                    assert response.status == 202
        assert jobs.calls == [("removed", "teams", "removed")]
        assert gate.counters.dropped["removal_coalesced"] == 9  # one is pending, nine folded into it
        jobs.release.set()
        with anyio.fail_after(30):
            while not gate.idle():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert jobs.calls == [("removed", "teams", "removed")] * 2
