"""Figure 4: cold start, from spawning `agentseat serve` to the first event delivered, and idle RSS.

Marks, all on the sandbox clock from the spawn of the process:
- `initialize_s`: the MCP `initialize` answered (the host can talk to it);
- `subscriptions_s`: both subscriptions live in the sandbox (webhooks can be delivered);
- `first_event_s`: a DM posted right after `initialize` reached the MCP client as a push.
Plus `import_s`: a bare interpreter importing what `serve` imports (the floor under all of it),
the Graph requests (and 429s) of the startup, and the runtime's own log lines as phases.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

import anyio

from .harness import SandboxHost, Served, memory_mb, serve

POLL = 0.025  # seconds between looks at the sandbox's subscriptions


#: Log events that mark startup phases (their first occurrence), in the order they happen.
PHASES = ("mcp_serving", "token_refreshed", "runtime_owner_elected", "webhook_listening", "resync_done",
          "tunnel_started", "subscription_created")


@dataclass
class ColdStart:
    initialize_s: float = float("nan")
    subscriptions_s: float = float("nan")
    first_event_s: float = float("nan")
    dm_id: str = ""
    startup_requests: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"initialize_s": round(self.initialize_s, 3), "subscriptions_s": round(self.subscriptions_s, 3),
                "first_event_s": round(self.first_event_s, 3)}

    def detail(self) -> dict[str, Any]:
        return {**self.as_dict(), "startup_graph_requests": self.startup_requests,
                "startup_throttled": self.throttled, "log_phases_s": self.phases_s}


def log_phases(log_path: Path, spawned_wall: float) -> dict[str, float]:
    """Seconds from spawn to each phase's log line (wall clock of the runtime's log timestamps).

    The last `subscription_created` is the second subscription; other phases take their first line.
    """
    found: dict[str, float] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        stamp, _, rest = line.partition(" ")
        words = rest.split("]", 1)[-1].split() if "]" in rest else []
        event = words[0] if words else ""  # a continuation line (a debug dump) names no event
        if event not in PHASES:
            continue
        try:
            at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - spawned_wall
        except ValueError:
            continue
        key = event
        if event == "resync_done":
            key = "resync_done_" + ("startup" if "reason=startup" in rest else "after_create")
        if event == "subscription_created" and key in found:
            key = "subscription_created_2nd"
        found.setdefault(key, round(at, 3))
    return found


@asynccontextmanager
async def cold_serve(host: SandboxHost, env: dict[str, str], workdir: Path, name: str,
                     *, subscriptions: int = 2) -> AsyncIterator[tuple[Served, ColdStart]]:
    """`serve` with the cold-start marks taken; yields once the first event arrived."""
    marks = ColdStart()
    before = await host.stats()
    spawned, spawned_wall = host.now(), time.time()
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
            after = await host.stats()
            marks.startup_requests = dict(Counter(after["requests"]) - Counter(before["requests"]))
            marks.throttled = dict(Counter(after["throttled"]) - Counter(before["throttled"]))
            marks.phases_s = log_phases(served.log_path, spawned_wall)
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


# --- `python -m bench.coldstart`: this figure alone, with the import floor, in one run ---------------------
#: The floor of issue 16's cold-start goal: Python, aiohttp and the mcp SDK's server side, nothing of ours.
FLOOR_CODE = "import aiohttp, aiohttp.web, mcp_types, mcp.server, mcp.server.stdio, mcp.server.runner"
#: What `serve` imports before it answers `initialize` (harness.import_seconds imports the same).
SERVE_CODE = "import agentseat.cli, agentseat.tools.preflight, agentseat.tools.server, agentseat.runtime.app"


def fresh_import_seconds(code: str, pythonpath: str, repeat: int = 5) -> float:
    """Fastest wall time of a fresh interpreter running `code` with `pythonpath` first."""
    import os
    import subprocess
    import sys

    from .harness import child_env

    env = {**os.environ, **child_env({"PYTHONPATH": pythonpath})}
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=pythonpath)
        best = min(best, time.perf_counter() - began)
    return round(best, 3)


#: Seconds between two cold starts. Each start reads the agent's chats (GET /me/chats, 1 a second
#: per user) and the DM's chat (1 a second per chat; Teams limits in sandbox/graph/throttle.py):
#: a start within a second of the last one waits out a 429, which is the bench's pace of
#: restarts, not the agent's start.
REST_BETWEEN_STARTS = 2.0


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Cold starts against one sandbox, the import floor measured beside them. `--baseline DIR`
    alternates each run with a serve importing agentseat from DIR (another checkout), so a
    change is compared with what it changed under the same load. `--importtime` keeps
    `-X importtime` of the first serve in its log and prints the costliest imports."""
    import argparse
    import json
    import sys
    import tempfile

    from .harness import REPO, fresh_dir, loadavg, quiet_logging
    from .latency import webhook_env

    parser = argparse.ArgumentParser(prog="python -m bench.coldstart")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", help="a checkout whose agentseat to compare with, run for run")
    parser.add_argument("--importtime", action="store_true", help="profile the first serve's imports")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    args = parser.parse_args(argv)
    root = fresh_dir(Path(args.dir)) if args.dir else Path(tempfile.mkdtemp(prefix="agentseat-cold-"))
    quiet_logging(root / "bench.log")
    trees = {"tree": str(REPO), **({"baseline": str(Path(args.baseline).resolve())} if args.baseline else {})}
    out: dict[str, Any] = {"loadavg_start": loadavg(), "python_s": fresh_import_seconds("pass", str(REPO)),
                           "import_floor_s": fresh_import_seconds(FLOOR_CODE, str(REPO)),
                           "serve_imports_s": {name: fresh_import_seconds(SERVE_CODE, path)
                                               for name, path in trees.items()},
                           "runs": {name: [] for name in trees}}
    async with SandboxHost(root) as host:
        for i in range(args.runs):
            # The floor again beside each round, its fastest kept: load that comes and goes must not
            # leave the floor measured in a busy moment and the runs in a quiet one, or the reverse.
            out["import_floor_s"] = min(out["import_floor_s"], fresh_import_seconds(FLOOR_CODE, str(REPO), 2))
            order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
            for name, path in order:
                await anyio.sleep(REST_BETWEEN_STARTS)
                env = webhook_env(await host.provision(root / f"agent-{name}{i}")) | {"PYTHONPATH": path}
                if args.importtime and i == 0:
                    env["PYTHONPROFILEIMPORTTIME"] = "1"
                async with cold_serve(host, env, root / f"cold-{name}{i}", "serve") as (served, marks):
                    out["runs"][name].append(marks.as_dict())
                    if i == 0:
                        out[f"first_run_{name}"] = marks.detail()
                        if args.importtime:
                            out[f"top_imports_{name}"] = top_imports(served.log_path)
                await host.drop_subscriptions()
    out["summary"] = {name: summarize(runs) for name, runs in out["runs"].items()}
    out["goal_s"] = round(max(1.5 * out["import_floor_s"], 1.0), 3)
    out["loadavg_end"] = loadavg()
    print(json.dumps(out, indent=1), file=sys.stdout)
    return out


def top_imports(log_path: Path, count: int = 25) -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time (ms) in a `-X importtime` log."""
    costs: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2].strip()
        costs[name] = max(costs.get(name, 0.0), int(fields[1]) / 1000)
    return sorted(costs.items(), key=lambda kv: -kv[1])[:count]


if __name__ == "__main__":
    anyio.run(main)
