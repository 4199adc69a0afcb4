"""Figure 4: cold start, from spawning `agentseat serve` to the first event delivered, and idle RSS.

Marks, all on the sandbox clock from the spawn of the process:
- `initialize_s`: the MCP `initialize` answered (the host can talk to it);
- `subscriptions_s`: both subscriptions live in the sandbox (webhooks can be delivered);
- `first_event_s`: a DM posted right after `initialize` reached the MCP client as a push.
Plus `import_s`: a bare interpreter importing what `serve` imports (the floor under all of it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import anyio

from .harness import SandboxHost, Served, memory_mb, serve

POLL = 0.025  # seconds between looks at the sandbox's subscriptions


@dataclass
class ColdStart:
    initialize_s: float = float("nan")
    subscriptions_s: float = float("nan")
    first_event_s: float = float("nan")
    dm_id: str = ""

    def as_dict(self) -> dict[str, float]:
        return {"initialize_s": round(self.initialize_s, 3), "subscriptions_s": round(self.subscriptions_s, 3),
                "first_event_s": round(self.first_event_s, 3)}


@asynccontextmanager
async def cold_serve(host: SandboxHost, env: dict[str, str], workdir: Path, name: str,
                     *, subscriptions: int = 2) -> AsyncIterator[tuple[Served, ColdStart]]:
    """`serve` with the cold-start marks taken; yields once the first event arrived."""
    marks = ColdStart()
    spawned = host.now()
    done = anyio.Event()

    async def watch_subscriptions() -> None:
        with anyio.move_on_after(120):
            while len(await host.live_subscriptions()) < subscriptions:
                await anyio.sleep(POLL)
            marks.subscriptions_s = host.now() - spawned
        done.set()

    async def post_first_dm() -> None:
        posted = await host.dm(host.upn("sponsor"), host.upn("agent_user"), "first event after start")
        marks.dm_id = posted["message_id"]

    async with anyio.create_task_group() as tg:
        if subscriptions:
            tg.start_soon(watch_subscriptions)
        else:
            done.set()
        async with serve(env, workdir, name, host.now, initialized=post_first_dm) as served:
            marks.initialize_s = served.initialized_at - spawned
            if await served.wait_for([marks.dm_id], 120):
                marks.first_event_s = served.received([marks.dm_id])[marks.dm_id].at - spawned
            await done.wait()
            yield served, marks


async def idle_rss(served: Served, settle: float = 3.0) -> dict[str, float]:
    await anyio.sleep(settle)
    return memory_mb(served.pid) if served.pid else {}


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Median and max of each mark over the runs."""
    out: dict[str, Any] = {"count": len(runs)}
    for key in ("initialize_s", "subscriptions_s", "first_event_s"):
        values = [r[key] for r in runs]
        out[key] = {"median": round(median(values), 3), "max": round(max(values), 3)}
    return out
