"""Resyncs asked for by floods (dropped fetches, failed confirmations) coalesce per kind."""

from __future__ import annotations

from typing import Any

import anyio

from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from tests.runtime.test_runtime import control, wait_for


async def test_many_resync_requests_cost_one_running_and_one_pending_round_per_kind(
    sandbox: Sandbox, agent_settings: Any
) -> None:
    runtime = Runtime(agent_settings)
    try:
        await control(sandbox, "POST", "/_sandbox/behaviour", {"graph_latency_ms": [50, 50]})  # rounds overlap the requests
        poller = runtime.poller
        async with anyio.create_task_group() as tg:
            tg.start_soon(poller.run_resyncs)
            asked = [poller.resync_soon("mail", "flood") for _ in range(50)]
            await wait_for(lambda: poller.counters.mail_rounds == 1)
            asked += [poller.resync_soon("mail", "flood") for _ in range(50)]
            asked += [poller.resync_soon("teams", "flood")]
            await wait_for(lambda: poller.counters.mail_rounds == 2 and poller.counters.chat_rounds == 1)
            tg.cancel_scope.cancel()
        assert asked.count(True) == 3  # mail twice (one ran while one waited), teams once
        assert poller.counters.by_reason["coalesced"] == 98
        assert sandbox.stats.requests["GET /me/mailFolders/{folder_id}/messages/delta"] == 2
    finally:
        await runtime.aclose()
