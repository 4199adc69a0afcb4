"""Coalesced lifecycle jobs: a flood costs one run and one spaced run, also when it comes as separate POSTs."""

from __future__ import annotations

import anyio

from agentseat.subscriptions.coalesce import Coalescer


async def test_requests_after_a_run_ended_fold_into_one_spaced_run() -> None:
    """A flood of separate POSTs: the first run ends before the rest arrive. They must fold into one
    run that waits out the spacing, not start one run at once and queue another behind it."""
    runs: list[tuple[str, str]] = []

    async def job(key: str, reason: str) -> None:
        runs.append((key, reason))

    coalescer = Coalescer("resync", job, spacing=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run)
        await anyio.wait_all_tasks_blocked()
        assert coalescer.request("mail", "missed")
        await anyio.wait_all_tasks_blocked()
        assert runs == [("mail", "missed")] and coalescer.idle()  # the first run has ended
        answers = [coalescer.request("mail", "missed") for _ in range(19)]
        assert answers == [True] + [False] * 18  # one pending run; the rest coalesced into it
        assert coalescer.pending("mail") and len(runs) == 1  # it waits out the spacing
        while not coalescer.idle():
            await anyio.sleep(0.05)
        assert runs == [("mail", "missed")] * 2
        assert coalescer.request("teams", "missed")  # another key is not held back by this one
        await anyio.wait_all_tasks_blocked()
        assert runs[-1] == ("teams", "missed")
        tg.cancel_scope.cancel()
