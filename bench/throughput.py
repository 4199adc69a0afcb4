"""Figure 2: the highest sustained rate of encrypted rich notifications taken with zero loss.

The load generator POSTs genuine notifications (bench/loadgen.py builds them, bench/rawsender.py
sends them) straight to the runtime's webhook, open loop, at a ladder of rates; batches of 1 and of 20 items per
POST. A step passes when:
- every POST is answered 2xx within Graph's 3-second timeout (a later answer is a
  failed delivery to Graph, retried and counted against the endpoint),
- the generator kept the schedule (achieved rate >= 95 % of the target: when the
  runtime answers too slowly, in-flight POSTs pile up and the schedule slips),
- every item reached the MCP client as a channel push within the drain window, and
- the pushes kept up: their own pace (items over the time from the first push to the
  last) >= 95 % of the target, so a backlog growing inside the runtime fails the step
  even when nothing is lost yet.
The rate doubles until a step fails, then bisects. CPU (utime + stime from
/proc/<pid>/stat, all threads; every consumer process together) is taken over each step,
from its first send to its last push; peak RSS is VmHWM from /proc/<pid>/status.

The ladder is transport-neutral: `ladder` takes the webhook's URL (POSTs, as above) or
any `Sender` that delivers the bodies some other way (bench/eventhub.py publishes them to
the emulated Event Hub), and any `Consumer`: one `Served` runtime or several together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from .harness import Push, SandboxHost, Served, cpu_seconds, memory_mb
from .loadgen import SendResult
from .rawsender import send_paced_raw

DRAIN = 15.0  # seconds after the last send for the last push to arrive

#: Delivers `bodies` (item ids, JSON bytes) at `posts_per_s`, open loop, and says how it went.
Sender = Callable[[list[tuple[list[str], bytes]], float], Awaitable[SendResult]]


class Consumer(Protocol):
    """What a step watches: the runtime process(es) taking the items, and their pushes."""

    @property
    def pids(self) -> list[int]: ...

    def received(self, ids: Iterable[str]) -> dict[str, Push]: ...

    async def wait_for(self, ids: Iterable[str], timeout: float) -> bool: ...


def _cpu(served: Consumer) -> float:
    return sum(cpu_seconds(pid) for pid in served.pids)


def _sandbox_cpu(host: SandboxHost) -> float:
    return cpu_seconds(host.pid) if host.pid else 0.0


@dataclass
class Step:
    batch: int
    items_per_s: float
    result: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.result["passed"])


async def step(host: SandboxHost, served: Consumer, send: Sender, *,
               batch: int, items_per_s: float, seconds: float) -> Step:
    posts_per_s = items_per_s / batch
    posts = max(2, round(posts_per_s * seconds))
    bodies = await host.notification_bodies(posts, batch)
    ids = [i for item_ids, _ in bodies for i in item_ids]
    cpu0, sandbox0, began = _cpu(served), _sandbox_cpu(host), host.now()
    sent = await send(bodies, posts_per_s)
    sent_done = host.now()
    arrived = await served.wait_for(ids, DRAIN)
    got = served.received(ids)
    last = max((p.at for p in got.values()), default=host.now())
    first = min((p.at for p in got.values()), default=began)
    cpu = _cpu(served) - cpu0
    sandbox_cpu = _sandbox_cpu(host) - sandbox0
    wall = max(last - began, 1e-6)
    achieved = sent.achieved_posts_per_s * batch
    # The pace of the pushes themselves, first to last: a backlog growing inside the runtime
    # stretches it, while the fixed latency of one item (which a short step would
    # otherwise count against the rate) does not.
    delivered = (len(got) - batch) / max(last - first, 1e-6) if len(got) > batch else 0.0
    passed = (sent.failed == 0 and sent.over_timeout == 0 and arrived
              and achieved >= 0.95 * items_per_s and delivered >= 0.95 * items_per_s)
    return Step(batch, items_per_s, {
        "batch": batch,
        "target_items_per_s": round(items_per_s, 1),
        "achieved_items_per_s": round(achieved, 1),
        "delivered_items_per_s": round(delivered, 1),
        "items": len(ids),
        "pushed": len(got),
        "lost": len(ids) - len(got),
        "failed_posts": sent.failed,
        "posts_over_3s": sent.over_timeout,
        "answer_ms": sent.answer_ms(),
        "push_lag_s": round(last - sent_done, 3),
        "cpu_cores": round(cpu / wall, 2),
        "cpu_ms_per_item": round(cpu * 1000 / max(len(got), 1), 3),
        # The sender's side: near one core means the sandbox (Graph's part here), not the runtime, set the pace.
        "sandbox_cpu_cores": round(sandbox_cpu / wall, 2),
        "passed": passed,
    })


async def ladder(host: SandboxHost, served: Consumer, target: str | Sender, *, batch: int, start: float,
                 seconds: float, bisect: int, cap: float) -> dict[str, Any]:
    """Double from `start` until a step fails (or `cap`), then `bisect` times between pass and fail.

    `target` is the webhook's URL (the bodies are POSTed there) or a `Sender`."""
    steps: list[Step] = []
    best: Step | None = None
    failed_at: float | None = None
    if isinstance(target, str):
        url = target

        async def send(bodies: list[tuple[list[str], bytes]], posts_per_s: float) -> SendResult:
            # The lean sender: aiohttp's client took as much CPU as the runtime (bench/rawsender.py).
            return await send_paced_raw(url, bodies, posts_per_s)
    else:
        send = target
    rate = start
    while rate <= cap:
        s = await step(host, served, send, batch=batch, items_per_s=rate, seconds=seconds)
        steps.append(s)
        await anyio.sleep(1.0)  # let the runtime settle between steps
        if not s.passed:
            failed_at = rate
            break
        best = s
        rate *= 2
    low = best.items_per_s if best else 0.0
    for _ in range(bisect if failed_at else 0):
        assert failed_at is not None
        rate = (low + failed_at) / 2
        s = await step(host, served, send, batch=batch, items_per_s=rate, seconds=seconds)
        steps.append(s)
        await anyio.sleep(1.0)
        if s.passed:
            best, low = s, rate
        else:
            failed_at = rate
    return {
        "max_zero_loss_items_per_s": round(best.items_per_s, 1) if best else 0.0,
        "first_failing_items_per_s": round(failed_at, 1) if failed_at else None,
        "at_max": best.result if best else None,
        "steps": [s.result for s in steps],
        "capped": failed_at is None,
    }


def peak_rss(served: Served) -> dict[str, float]:
    return memory_mb(served.pid) if served.pid else {}
