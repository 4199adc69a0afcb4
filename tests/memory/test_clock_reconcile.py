"""The reconcile behind webhooks and the subscriptions' renewals are timers of the clock: when the
runtime's time passes their due time, the owner does the work (time is moved, not slept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc

from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import start, wait_for


class MovableNow:
    """The runtime clock's `now`, moved forward by the test instead of slept."""

    def __init__(self) -> None:
        self.moved = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.moved


async def webhook_runtime(tg: anyio.abc.TaskGroup, agent_env: dict[str, str]) -> tuple[Any, MovableNow]:
    running = await start(tg, {**agent_env, "AGENTSEAT_MODE": "webhook"}, reconcile_seconds="3600")
    now = running.runtime.clock.now = MovableNow()
    return running.runtime, now


async def test_the_clock_runs_the_reconcile_when_its_time_comes(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        runtime, now = await webhook_runtime(tg, agent_env)
        await wait_for(lambda: runtime.status.source == "webhook")
        await wait_for(lambda: any(t.name == "reconcile" for t in runtime.clock.timers))
        assert runtime.poller.counters.by_reason.get("timer", 0) == 0
        await wait_for(lambda: any(t.name == "renewals" for t in runtime.clock.timers))
        # The clock looks again once the first renewal pass is over; the stored time is then the earliest.
        await wait_for(lambda: (runtime.clock.next_due or datetime.max.replace(tzinfo=UTC))
                       < datetime.now(UTC) + timedelta(minutes=6))
        shown = runtime.describe()["scheduled"]
        reconcile = datetime.fromisoformat(shown["reconcile"])
        assert timedelta(minutes=59) < reconcile - datetime.now(UTC) <= timedelta(hours=1)
        # The subscriptions' renewals are the clock's too (at most 5 minutes to the next look).
        renewals = datetime.fromisoformat(shown["renewals"])
        assert renewals - datetime.now(UTC) <= timedelta(minutes=5)
        # `status` recomputes "renewals" from now; the stored next due time came from the last tick.
        timers = [datetime.fromisoformat(shown[t.name]) for t in runtime.clock.timers]  # channels' renewals too
        assert abs(datetime.fromisoformat(shown["next_due"]) - min(timers)) < timedelta(seconds=30)
        now.moved = timedelta(hours=1, seconds=1)
        runtime.clock.wake()
        await wait_for(lambda: runtime.poller.counters.by_reason.get("timer", 0) >= 2)  # chats and mail, once each
        tg.cancel_scope.cancel()


async def test_the_clock_says_when_a_subscription_is_renewed(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        runtime, now = await webhook_runtime(tg, agent_env)
        await wait_for(lambda: any(t.name == "renewals" for t in runtime.clock.timers))
        manager = runtime.manager
        assert manager is not None
        state = manager.states["teams"]
        # As after a suspend: the subscription is close to expiry and nothing slept until then.
        state.expires = datetime.now(UTC).timestamp() + 60
        await anyio.sleep(0.2)
        assert state.expires < datetime.now(UTC).timestamp() + 120  # nothing renews it on its own
        now.moved = timedelta(minutes=6)  # past the manager's next look (at most 5 minutes away)
        runtime.clock.wake()
        await wait_for(lambda: state.expires > datetime.now(UTC).timestamp() + 600)  # renewed by a PATCH
        live = sandbox.tenant.subscriptions[state.id]
        assert abs(live.expiration - state.expires) < 1
        tg.cancel_scope.cancel()
