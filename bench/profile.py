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

import aiohttp
import anyio

from .harness import SandboxHost, Served, cpu_seconds
from .loadgen import send_paced


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/module.py:123)".
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    module = path.split("site-packages/")[-1].split("/agentseat/")[-1]
    if "/agentseat/" in path or path.startswith("agentseat/"):
        module = "agentseat/" + module
    return f"{module}:{name}"


def fold(raw: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's collapsed (`--format raw`) output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        self_time[_frame_name(frames[-1])] += n
        for name in {_frame_name(f) for f in frames}:
            if name.startswith("agentseat/"):
                inclusive[name] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self": [{"function": k, "share": round(v / total, 3)} for k, v in self_time.most_common(top)],
        "inclusive_agentseat": [{"function": k, "share": round(v / total, 3)} for k, v in inclusive.most_common(top)],
    }


async def sample(host: SandboxHost, served: Served, url: str, workdir: Path, *, items_per_s: float, batch: int,
                 seconds: float) -> dict[str, Any]:
    """py-spy the runtime while it takes `items_per_s` for `seconds`."""
    tool = py_spy()
    if tool is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    out = workdir / f"py-spy-batch{batch}.txt"
    posts_per_s = items_per_s / batch
    bodies = await host.notification_bodies(max(2, round(posts_per_s * (seconds + 1))), batch)
    ids = [i for item_ids, _ in bodies for i in item_ids]
    command = [tool, "record", "--pid", str(served.pid), "--duration", str(int(seconds)), "--rate", "200",
               "--format", "raw", "--threads", "--nonblocking", "--output", str(out)]
    cpu0 = cpu_seconds(served.pid)
    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        spy = await anyio.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tg.start_soon(lambda: send_paced(http, url, bodies, posts_per_s))
        await spy.wait()
        error = (await spy.stderr.receive()).decode(errors="replace") if spy.returncode and spy.stderr else ""
    await served.wait_for(ids, 15)
    cpu = cpu_seconds(served.pid) - cpu0
    if spy.returncode or not out.exists():
        return {"skipped": f"py-spy failed ({spy.returncode}): {error.strip()[:200]}"}
    folded = fold(out.read_text())
    return {"items_per_s": items_per_s, "batch": batch, "seconds": seconds, "cpu_seconds": round(cpu, 2),
            "raw": str(out), **folded}
