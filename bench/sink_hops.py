"""The channel sink when events arrive one at a time (batch 1): worker-thread calls and CPU per push.

The real `ChannelSink` on a real `Inbox`: each event is appended alone (`aappend`, one
worker-thread call) and pushed before the next is appended, as at a low webhook rate where
every POST carries one item. Worker-thread calls are counted, not timed, so a loaded
machine cannot change them; CPU (`time.process_time`, all threads) is per event, the append
included. bench/hotpath.py reports it as `channel_arrivals`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from agentseat.runtime.events import Event
from agentseat.runtime.inbox import Inbox
from agentseat.tools.channel import ChannelSink


class _Runtime:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox


async def measure(events: int = 200) -> dict[str, Any]:
    calls = 0
    real = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    anyio.to_thread.run_sync = counting  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="agentseat-sink-hops-") as tmp:
            inbox = Inbox(Path(tmp) / "inbox.db")
            pushed = anyio.Event()
            sink = ChannelSink(batch=10, claimant="bench", group_policy="all")

            async def push(_: dict[str, Any]) -> None:
                pushed.set()

            sink.attach(push)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sink, _Runtime(inbox))  # type: ignore[arg-type]
                    await anyio.sleep(0.2)  # the group exists and the sink waits
                    first, cpu0 = calls, time.process_time()
                    for i in range(events):
                        pushed = anyio.Event()
                        await inbox.aappend([Event.teams(
                            chat_id="19:bench@thread.v2", message_id=str(1_000 + i), sender_id="u-1",
                            sender_upn="colleague@contoso.com", sender_name="C", trust="colleague", text="hi",
                            created_at="2026-12-07T02:00:00Z", source="webhook")])
                        with anyio.fail_after(10):
                            await pushed.wait()
                    await anyio.sleep(0.05)  # the claim that acknowledges the last one
                    made, cpu = calls - first, time.process_time() - cpu0
                    tg.cancel_scope.cancel()
            finally:
                inbox.close()
    finally:
        anyio.to_thread.run_sync = real  # type: ignore[assignment]
    return {"events": events, "sink_thread_calls_per_event": round((made - events) / events, 2),
            "cpu_us_per_event": round(cpu / events * 1e6, 1)}
