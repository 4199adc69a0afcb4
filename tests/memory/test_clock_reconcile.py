"""The reconcile behind webhooks is a timer of the clock: when the runtime's time passes
`AGENTSEAT_RECONCILE_SECONDS`, the owner reads chats and mail once (moved, not slept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import start, wait_for


async def test_the_clock_runs_the_reconcile_when_its_time_comes(sandbox: Sandbox, agent_env: dict[str, str]) -> None:
    moved = timedelta()

    def now() -> datetime:
        return datetime.now(UTC) + moved

    async with anyio.create_task_group() as tg:
        running = await start(tg, {**agent_env, "AGENTSEAT_MODE": "webhook"}, reconcile_seconds="3600")
        runtime = running.runtime
        runtime.clock.now = now
        await wait_for(lambda: runtime.status.source == "webhook")
        await wait_for(lambda: any(t.name == "reconcile" for t in runtime.clock.timers))
        assert runtime.poller.counters.by_reason.get("timer", 0) == 0
        scheduled = datetime.fromisoformat(runtime.describe()["scheduled"]["next_due"])
        assert timedelta(minutes=59) < scheduled - datetime.now(UTC) <= timedelta(hours=1)
        assert runtime.describe()["scheduled"]["reconcile"] == scheduled.isoformat()
        moved = timedelta(hours=1, seconds=1)
        runtime.clock.wake()
        await wait_for(lambda: runtime.poller.counters.by_reason.get("timer", 0) >= 2)  # chats and mail, once each
        tg.cancel_scope.cancel()
