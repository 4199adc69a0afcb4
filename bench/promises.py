"""`python -m bench promises`: the idle cost of the clock with 1,000 pending promises.

The owner's clock (agentseat/clock) with N promises due over the next 30 days runs for a
window with nothing due. Reported: Graph requests (the clock makes none: it has no Graph
client), the clock's own wake-ups in the window and per hour (its ceiling is 3600/RECHECK,
one look per RECHECK seconds to notice a clock jump), the process's voluntary context
switches per hour during the window (/proc, Linux), and the cost of one tick and of a poke.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from agentseat.clock import Clock, poke
from agentseat.clock.scheduler import RECHECK
from agentseat.promises import Promises
from agentseat.runtime.inbox import Inbox


def _switches() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


async def measure(promises_count: int, seconds: float, root: Path) -> dict[str, Any]:
    inbox, promises = Inbox(root / "inbox.db"), Promises(root / "promises.db")
    now = datetime.now(UTC)
    for i in range(promises_count):
        promises.add("19:bench@thread.v2", f"promise {i}", now + timedelta(days=1, seconds=i * 2500))
    clock = Clock(promises, inbox)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(clock.run)
            started = time.perf_counter()
            await clock.tick()
            tick_ms = (time.perf_counter() - started) * 1000
            woke, switches, t0 = clock.wakeups, _switches(), time.monotonic()
            await anyio.sleep(seconds)
            elapsed = time.monotonic() - t0
            idle_wakeups, after = clock.wakeups - woke, _switches()
            before_poke = clock.wakeups
            poked_at = time.perf_counter()
            poke(promises)
            with anyio.fail_after(5):
                while clock.wakeups == before_poke:
                    await anyio.sleep(0.001)
            poke_ms = (time.perf_counter() - poked_at) * 1000
            tg.cancel_scope.cancel()
    finally:
        inbox.close()
        promises.close()
    return {
        "pending_promises": promises_count, "window_seconds": round(elapsed, 1),
        "graph_requests": 0, "reminders_raised": clock.fired,
        "clock_wakeups_in_window": idle_wakeups,
        "clock_wakeups_per_hour_ceiling": round(3600 / RECHECK, 1),
        "process_voluntary_switches_per_hour": None if switches is None or after is None
        else round((after - switches) * 3600 / elapsed),
        "tick_ms": round(tick_ms, 2), "poke_to_wake_ms": round(poke_ms, 2),
    }


async def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench promises", description=__doc__.splitlines()[0])
    parser.add_argument("--promises", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="the idle window")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentseat-bench-promises-") as root:
        result = await measure(args.promises, args.seconds, Path(root))
    print(json.dumps(result))
    return result


def lines(c: dict[str, Any]) -> list[str]:
    """report.table's line for the clock, from `measure`'s result in the main run (issue 16, point 4)."""
    if not c:
        return []
    switches = c.get("process_voluntary_switches_per_hour")
    return [f"   the clock, {c['pending_promises']} promises pending, idle {c['window_seconds']} s: "
            f"{c['clock_wakeups_in_window']} wake-ups (ceiling {c['clock_wakeups_per_hour_ceiling']}/hour), "
            f"{c['graph_requests']} Graph requests, one tick {c['tick_ms']} ms, poke to wake {c['poke_to_wake_ms']} ms"
            + (f"; {switches} voluntary context switches/hour (the whole bench process)" if switches is not None
               else "")]
