"""The runtime process sampled under load with py-spy: where its CPU goes.

Optional: runs only when `py-spy` is installed (`pip install py-spy`; it is not a
project dependency) and may attach to the process (ptrace). The runtime is driven
at a steady rate by the load generator while py-spy samples every thread
(`--threads --nonblocking`, idle frames excluded); the collapsed stacks are folded
into self time per function and inclusive time per agentseat function.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from .harness import SandboxHost, Served, cpu_seconds
from .rawsender import send_paced_raw


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


#: Leaf frames of a thread that waits (py-spy's idle detection misses some in containers).
IDLE = frozenset({"threading.py:Condition.wait", "selectors.py:EpollSelector.select", "threading.py:Event.wait",
                  "threading.py:Thread._wait_for_tstate_lock"})
#: Where a sample's time goes: the first rule that matches, walking from the leaf frame up.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("decrypt (RSA-OAEP, HMAC, AES)", ("cryptography/", "runtime/crypto.py")),
    ("validation tokens (JWT RS256)", ("jwt/", "runtime/verify.py")),
    ("SQLite inbox", ("sqlite3/", "runtime/inbox.py")),
    ("logging (structlog)", ("structlog/", "logging/", "agentseat/logging.py")),
    ("MCP push (mcp, pydantic, stdout)", ("mcp/", "mcp_types/", "tools/channel.py", "tools/server.py")),
    ("HTTP server (aiohttp)", ("aiohttp/", "runtime/webhook.py")),
    ("parse, screen, normalise", ("runtime/pipeline.py", "runtime/batch.py", "runtime/normalize.py",
                                  "graph/models.py", "pydantic/")),
    ("event loop and thread hops", ("threading.py", "anyio/", "asyncio/", "selectors.py", "concurrent/")),
)


def _frame_name(frame: str) -> str:
    """`module/path.py:function` from py-spy's `function (path/to/module.py:123)`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    if "/agentseat/" in path:
        module = "agentseat/" + path.split("/agentseat/")[-1]
    elif path.startswith("agentseat/"):
        module = path
    else:
        module = path.split("site-packages/")[-1].split("/lib/python3")[-1].lstrip("/")
        module = module.split("/", 1)[1] if module.startswith("3.") and "/" in module else module
    return f"{module}:{name}"


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, needles in CATEGORIES:
            if any(n in frame for n in needles):
                return label
    return "other"


def fold(raw: str, top: int = 12) -> dict[str, Any]:
    """Busy-sample shares from py-spy's collapsed (`--format raw`) output: by category,
    by function (self time), and inclusive per agentseat function."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = busy = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        if frames[-1] in IDLE:
            continue
        busy += n
        self_time[frames[-1]] += n
        categories[_category(frames)] += n
        for name in set(frames):
            if name.startswith("agentseat/") and not name.startswith("agentseat/cli.py"):
                inclusive[name] += n
    if not busy:
        return {"samples": total, "busy_samples": 0}

    def shares(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [{"function": k, "share": round(v / busy, 3)} for k, v in counter.most_common(limit)]

    return {
        "samples": total,
        "busy_samples": busy,
        "categories": {k: round(v / busy, 3) for k, v in categories.most_common()},
        "self": shares(self_time, top),
        "inclusive_agentseat": shares(inclusive, top),
    }


async def sample(host: SandboxHost, served: Served, url: str, workdir: Path, *, items_per_s: float, batch: int,
                 seconds: float, gil: bool = False) -> dict[str, Any]:
    """py-spy the runtime while it takes `items_per_s` for `seconds`.

    `gil=True` samples only the thread holding the GIL: Python-level CPU without the time
    threads spend waiting for the GIL (which the all-threads view counts as busy), but
    also without native work done with the GIL released (RSA in `cryptography`).
    """
    tool = py_spy()
    if tool is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    out = workdir / f"py-spy-batch{batch}{'-gil' if gil else ''}.txt"
    posts_per_s = items_per_s / batch
    bodies = await host.notification_bodies(max(2, round(posts_per_s * (seconds + 1))), batch)
    ids = [i for item_ids, _ in bodies for i in item_ids]
    command = [tool, "record", "--pid", str(served.pid), "--duration", str(int(seconds)), "--rate", "200",
               "--format", "raw", "--threads", "--nonblocking", "--output", str(out), *(["--gil"] if gil else [])]
    cpu0 = cpu_seconds(served.pid)
    async with anyio.create_task_group() as tg:
        spy = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tg.start_soon(lambda: send_paced_raw(url, bodies, posts_per_s))
        await spy.wait()
        error = (await spy.stderr.receive()).decode(errors="replace") if spy.returncode and spy.stderr else ""
    await served.wait_for(ids, 15)
    cpu = cpu_seconds(served.pid) - cpu0
    if spy.returncode or not out.exists():
        return {"skipped": f"py-spy failed ({spy.returncode}): {error.strip()[:200]}"}
    folded = fold(out.read_text())
    return {"items_per_s": items_per_s, "batch": batch, "seconds": seconds, "gil_only": gil,
            "cpu_seconds": round(cpu, 2), "raw": str(out), **folded}
