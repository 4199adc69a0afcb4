"""Issue 14, point 5: Event Hubs delivery (`--mode eventhub`) measured beside webhook delivery.

Against the sandbox's emulated Event Hubs namespace (AMQP 1.0 over TLS on loopback,
4 partitions), each runtime being `agentseat serve` driven by a real MCP client:

1. **Latency**: the same steady DM traffic as bench/latency.py (10 DMs/s from three
   senders, `created -> MCP push` on the sandbox clock) in a webhook runtime and in an
   eventhub runtime, one after the other; p50/p95/p99 side by side and hub / webhook.
2. **Throughput**: bench/throughput.py's zero-loss ladder, the genuine encrypted bodies
   published to the hub at the step's rate (`/_bench/eventhub/publish`, paced inside the
   sandbox as Graph's sender would be, `validationTokens` taken off by Graph's rule),
   for one consumer process (local checkpoints) and for two (two state dirs, one agent,
   Blob checkpoints on Azurite) sharing the partitions. CPU counts both processes.
3. **Idle cost** of an eventhub runtime: Graph and token requests (bench/idle.py's
   window, renewal notices and reconciliation, now delivered through the hub) and the
   AMQP frames and bytes each way from the namespace's counters (`traffic` in
   `GET /_sandbox/eventhubs`), per hour.

`python -m bench eventhub [--quick]` runs this phase alone; `python -m bench` runs it too.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from . import azurite, idle, latency, throughput
from .harness import Push, SandboxHost, Served, fresh_dir, free_port, loadavg, machine, serve
from .loadgen import SendResult


@dataclass(frozen=True)
class Windows:
    latency_seconds: float  # DM traffic per runtime, at 10 msg/s
    warmup_seconds: float
    idle_seconds: float  # over a minute: the SDK's keep-alive frame goes every 60 s (half the hub's idle time-out)
    # Per throughput step. The SDK hands events over in 50 ms polls, which a step's push pace
    # (first push to last, bench/throughput.py) feels: a 2 s step would fail on that jitter alone.
    step_seconds: float
    bisect: int
    ladder_start: tuple[float, float]  # items/s for batches of 1 and 20


QUICK = Windows(latency_seconds=5, warmup_seconds=2, idle_seconds=65, step_seconds=4, bisect=0,
                ladder_start=(100.0, 200.0))
FULL = Windows(latency_seconds=60, warmup_seconds=10, idle_seconds=120, step_seconds=6, bisect=2,
               ladder_start=(50.0, 100.0))
#: The pair balances every 2 s (ownership expires after 10 s) so the partitions split in seconds,
#: not the defaults' half a minute; each balancing round is one Blob listing, outside the figures here.
PAIR_BALANCE = {"AGENTSEAT_EVENTHUB_BALANCE_SECONDS": "2", "AGENTSEAT_EVENTHUB_OWNERSHIP_SECONDS": "10"}
#: Safety bounds for start-up waits (subscriptions, partitions, a backlog of earlier events read).
STARTUP = 180.0
CAPS = {1: 3200.0, 20: 6400.0}
_STAGE_BYTES = 4 * 1024 * 1024  # per staging request: under the sandbox's 8 MB request limit
_KEYS = ("bytesIn", "bytesOut", "framesIn", "framesOut")


def eventhub_env(env: dict[str, str]) -> dict[str, str]:
    """`--mode eventhub`, no tunnel: the hub's settings come with the provisioned agent (sandbox.env's lines)."""
    return {**env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_TUNNEL": "none"}


class Group:
    """Several runtime processes taking one stream together (bench/throughput.py's `Consumer`)."""

    def __init__(self, members: list[Served]) -> None:
        self.members = members

    @property
    def pids(self) -> list[int]:
        return [pid for s in self.members for pid in s.pids]

    def received(self, ids: Iterable[str]) -> dict[str, Push]:
        out: dict[str, Push] = {}
        for s in self.members:
            for mid, push in s.received(ids).items():
                if mid not in out or push.at < out[mid].at:
                    out[mid] = push
        return out

    async def wait_for(self, ids: Iterable[str], timeout: float) -> bool:
        wanted = set(ids)
        with anyio.move_on_after(timeout):
            while not wanted <= {p.message_id for s in self.members for p in s.pushes}:
                await anyio.sleep(0.01)
            return True
        return False

    def duplicates(self) -> int:
        """Pushes of an item that was pushed before (by either process)."""
        seen = Counter(p.message_id for s in self.members for p in s.pushes)
        return sum(n - 1 for n in seen.values())

    def shares(self) -> list[int]:
        return [len(s.pushes) for s in self.members]


def publisher(host: SandboxHost) -> throughput.Sender:
    """Bodies go to the emulated hub: staged in chunks, then published at the rate inside the sandbox."""

    async def send(bodies: list[tuple[list[str], bytes]], posts_per_s: float) -> SendResult:
        chunk: list[str] = []
        size = 0
        for _, body in bodies:
            chunk.append(body.decode())
            size += len(body)
            if size >= _STAGE_BYTES:
                await host.request("POST", "/_bench/eventhub/stage", {"bodies": chunk})
                chunk, size = [], 0
        if chunk:
            await host.request("POST", "/_bench/eventhub/stage", {"bodies": chunk})
        done = await host.request("POST", "/_bench/eventhub/publish", {"posts_per_s": posts_per_s})
        return SendResult(target_posts_per_s=posts_per_s, posts=done["posts"], ok=done["ok"],
                          seconds=done["seconds"], send_seconds=done["send_seconds"],
                          answer_times=done["answer_times"])

    return send


async def traffic(host: SandboxHost) -> dict[str, Any]:
    return (await host.request("GET", "/_sandbox/eventhubs"))["traffic"]  # type: ignore[no-any-return]


async def _owned(served: Served) -> set[str]:
    hub = (await served.status()).get("eventhub") or {}
    return set(hub.get("owned") or [])


async def ready(host: SandboxHost, members: list[Served], *, subscriptions: int = 2) -> None:
    """Subscriptions live and the 4 partitions split evenly among `members`."""
    with anyio.fail_after(STARTUP):
        while len(await host.live_subscriptions()) < subscriptions:
            await anyio.sleep(0.1)
        while True:
            owned = [await _owned(s) for s in members]
            if set().union(*owned) == {"0", "1", "2", "3"} and sum(map(len, owned)) == 4 and \
                    max(map(len, owned)) - min(map(len, owned)) <= 1:
                return
            await anyio.sleep(0.2)


async def warm(host: SandboxHost, consumer: throughput.Consumer, seconds: float) -> bool:
    """DMs until each is pushed: every partition gets some (the hub spreads them round-robin), so a
    partition's backlog of earlier events (subscriptions since dropped) is read before figures are taken."""
    traffic_ = await latency.steady_dms(host, max(seconds, 1.0), tag="hub warm-up")
    return await consumer.wait_for(traffic_.sent, STARTUP)


# --- 1. latency ------------------------------------------------------------------------------------------------
async def _latency_in(host: SandboxHost, served: Served, w: Windows, tag: str) -> dict[str, Any]:
    return await latency.run_traffic(host, served, w.latency_seconds, 15, with_sends=False, tag=tag)


async def webhook_latency(host: SandboxHost, w: Windows, root: Path) -> dict[str, Any]:
    env = latency.webhook_env(await host.provision(root / "agent-eh-webhook"), free_port())
    async with serve(env, root / "eh-webhook", "serve", host.now) as served:
        with anyio.fail_after(STARTUP):
            while len(await host.live_subscriptions()) < 2:
                await anyio.sleep(0.1)
        await warm(host, served, w.warmup_seconds)
        out = await _latency_in(host, served, w, "eh-webhook")
    await host.drop_subscriptions()
    return out


# --- 2 and 3. one eventhub process: idle, latency, throughput ------------------------------------------------
async def _idle(host: SandboxHost, served: Served, seconds: float) -> dict[str, Any]:
    before = await traffic(host)
    window = await idle.window(host, seconds)
    after = await traffic(host)
    scale = 3600 / window["window_s"]
    amqp = {k: after[k] - before[k] for k in _KEYS}
    # Renewal notices come through the hub now; answering one costs what it costs a webhook runtime.
    reauth = await idle.reauthorize_cost(host, served)
    return {**idle.webhook_hourly(window, reauth), "window": window, "reauthorize_notices": reauth,
            "amqp_window": amqp, "amqp_per_hour": {k: round(v * scale) for k, v in amqp.items()},
            "amqp_connections": after["connectionsOpen"],
            "amqp_how": "the namespace's counters over the idle window, scaled to an hour (CBS token "
                        "renewals, one per token lifetime, fall outside a short window)"}


async def one_process(host: SandboxHost, w: Windows, root: Path) -> dict[str, Any]:
    env = eventhub_env(await host.provision(root / "agent-eh-one"))
    out: dict[str, Any] = {}
    async with serve(env, root / "eh-one", "serve", host.now) as served:
        await ready(host, [served])
        await warm(host, served, w.warmup_seconds)
        await anyio.sleep(2.0)  # the warm-up's checkpoints and fetches settle
        out["idle"] = await _idle(host, served, w.idle_seconds)
        out["latency"] = await _latency_in(host, served, w, "eh-latency")
        out["throughput"] = await _ladders(host, served, w)
        out["throughput"]["rss_mb"] = throughput.peak_rss(served)
    await host.drop_subscriptions()
    return out


async def _ladders(host: SandboxHost, consumer: throughput.Consumer, w: Windows) -> dict[str, Any]:
    send = publisher(host)
    results: dict[str, Any] = {}
    for batch, start in zip((1, 20), w.ladder_start, strict=True):
        results[f"batch{batch}"] = await throughput.ladder(host, consumer, send, batch=batch, start=start,
                                                           seconds=w.step_seconds, bisect=w.bisect, cap=CAPS[batch])
    return results


# --- 2b. two processes, Blob checkpoints on Azurite ------------------------------------------------------------
async def two_processes(host: SandboxHost, w: Windows, root: Path) -> dict[str, Any]:
    path = azurite.binary()
    if path is None:
        return {"skipped": azurite.MISSING}
    async with azurite.running(root / "azurite", path) as account:
        store = await azurite.container_sas_url(account, "checkpoints")
        env_a = {**eventhub_env(await host.provision(root / "agent-eh-a")), "AGENTSEAT_CHECKPOINT_STORE": store,
                 **PAIR_BALANCE}
        second = root / "agent-eh-b"
        second.mkdir(mode=0o700)
        shutil.copytree(Path(env_a["AGENTSEAT_STATE_DIR"]) / "keys", second / "keys")  # the same agent
        env_b = {**env_a, "AGENTSEAT_STATE_DIR": str(second), "AGENTSEAT_CONFIG_FILE": str(second / "agentseat.env")}
        async with serve(env_a, root / "eh-a", "serve", host.now) as a:
            await ready(host, [a])  # a manages the subscriptions; then b joins
            async with serve(env_b, root / "eh-b", "serve", host.now) as b:
                pair = Group([a, b])
                await ready(host, [a, b])
                await warm(host, pair, w.warmup_seconds)
                before = len(a.pushes), len(b.pushes)
                out = await _ladders(host, pair, w)
                out["duplicates"] = pair.duplicates()
                out["items_per_process"] = [n - m for n, m in zip(pair.shares(), before, strict=True)]
                out["owned"] = [sorted(await _owned(s)) for s in (a, b)]
                out["rss_mb"] = [throughput.peak_rss(s) for s in (a, b)]
        await host.drop_subscriptions()
    return out


async def phase(host: SandboxHost, w: Windows, root: Path, out: dict[str, Any], say: Any = None) -> None:
    """Every figure of this module into `out["eventhub"]`."""
    note = say or (lambda text: print(f"[bench eventhub] {text}", file=sys.stderr, flush=True))
    results: dict[str, Any] = {}
    note("eventhub: webhook latency, for comparison")
    results["webhook_latency"] = await webhook_latency(host, w, root)
    note("eventhub: one consumer process (idle, latency, throughput)")
    results["one"] = await one_process(host, w, root)
    note("eventhub: two consumer processes, Blob checkpoints on Azurite")
    results["two"] = await two_processes(host, w, root)
    out["eventhub"] = results


# --- figures and the table's block ------------------------------------------------------------------------------
def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or data.get(key) is None:
            return math.nan
        data = data[key]
    return data


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b and not math.isnan(a) and not math.isnan(b) else math.nan


def figures(r: dict[str, Any]) -> dict[str, Any]:
    eh = r.get("eventhub")
    if not eh:
        return {}
    out: dict[str, Any] = {}
    for q in ("p50", "p95", "p99"):
        hub = out[f"eventhub_latency_{q}_ms"] = _get(eh, "one", "latency", "total_ms", q)
        hook = out[f"eventhub_webhook_latency_{q}_ms"] = _get(eh, "webhook_latency", "total_ms", q)
        out[f"eventhub_latency_ratio_hub_vs_webhook_{q}"] = _ratio(hub, hook)
    for batch in ("batch1", "batch20"):
        out[f"eventhub_throughput_one_{batch}_items_per_s"] = _get(eh, "one", "throughput", batch,
                                                                   "max_zero_loss_items_per_s")
        out[f"eventhub_throughput_two_{batch}_items_per_s"] = _get(eh, "two", batch, "max_zero_loss_items_per_s")
    out["eventhub_two_duplicates"] = _get(eh, "two", "duplicates")
    out["eventhub_idle_graph_per_hour"] = _get(eh, "one", "idle", "graph_per_hour")
    out["eventhub_idle_tokens_per_hour"] = _get(eh, "one", "idle", "tokens_per_hour")
    for key in _KEYS:
        out[f"eventhub_idle_amqp_{key}_per_hour"] = _get(eh, "one", "idle", "amqp_per_hour", key)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def lines(r: dict[str, Any]) -> list[str]:
    """The table's Event Hubs block (bench/report.py); none without this phase's results."""
    eh = r.get("eventhub")
    if not eh:
        return []
    f = figures(r)
    rows = ["", "Event Hubs (--mode eventhub, emulated namespace, 4 partitions)",
            f"   latency, created -> MCP push, 10 DMs/s (ms) {'p50':>9} {'p95':>9} {'p99':>9} {'recv/sent':>10}"]
    for key, label, data in (("eventhub_webhook", "webhook runtime", eh.get("webhook_latency")),
                             ("eventhub", "eventhub runtime", _get(eh, "one", "latency"))):
        data = data if isinstance(data, dict) else {}
        rows.append(f"   {label:44} {_fmt(f[f'{key}_latency_p50_ms']):>9} {_fmt(f[f'{key}_latency_p95_ms']):>9} "
                    f"{_fmt(f[f'{key}_latency_p99_ms']):>9} {data.get('received', '-')}/{data.get('sent', '-')}")
    rows.append(f"   {'hub / webhook':44} {_fmt(f['eventhub_latency_ratio_hub_vs_webhook_p50']):>8}x "
                f"{_fmt(f['eventhub_latency_ratio_hub_vs_webhook_p95']):>8}x "
                f"{_fmt(f['eventhub_latency_ratio_hub_vs_webhook_p99']):>8}x")
    rows.append("   throughput, zero loss (items/s)            batch1   batch20")
    rows.append(f"   {'one process, local checkpoints':44} "
                f"{_fmt(f['eventhub_throughput_one_batch1_items_per_s']):>6} "
                f"{_fmt(f['eventhub_throughput_one_batch20_items_per_s']):>9}")
    two = eh.get("two") or {}
    if "skipped" in two:
        rows.append(f"   {'two processes, Blob checkpoints':44} skipped: {two['skipped']}")
    else:
        rows.append(f"   {'two processes, Blob checkpoints (Azurite)':44} "
                    f"{_fmt(f['eventhub_throughput_two_batch1_items_per_s']):>6} "
                    f"{_fmt(f['eventhub_throughput_two_batch20_items_per_s']):>9}   items per process "
                    f"{two.get('items_per_process')}, duplicates {two.get('duplicates')}")
    hour = _get(eh, "one", "idle", "amqp_per_hour")
    rows.append(f"   idle, per hour: graph {_fmt(f['eventhub_idle_graph_per_hour'])}, tokens "
                f"{_fmt(f['eventhub_idle_tokens_per_hour'])}; AMQP to the hub "
                f"{_fmt(_get(hour, 'framesIn'))} frames / {_fmt(_get(hour, 'bytesIn'))} B, from the hub "
                f"{_fmt(_get(hour, 'framesOut'))} frames / {_fmt(_get(hour, 'bytesOut'))} B "
                f"({_fmt(_get(eh, 'one', 'idle', 'amqp_connections'))} connections, "
                f"{_fmt(_get(eh, 'one', 'idle', 'window', 'window_s'))} s window scaled)")
    window = _get(eh, "one", "idle", "window")
    if isinstance(window, dict) and window.get("routes"):  # what the runtime read while idle, and why
        scale = 3600 / window["window_s"]
        rows.append("     of which background reads: " + ", ".join(
            f"{route} {n * scale:.0f}/h" for route, n in window["routes"].items()))
    return rows


# --- `python -m bench eventhub` ---------------------------------------------------------------------------------
async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench eventhub", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (about 3 minutes)")
    parser.add_argument("--workdir", type=Path, help="keep state and logs here (default: a fresh temp dir)")
    parser.add_argument("--json", type=Path, help="also write the full results here")
    args = parser.parse_args(argv)
    from .harness import quiet_logging

    root = fresh_dir(args.workdir or Path(tempfile.mkdtemp(prefix="agentseat-bench-eventhub-")))
    quiet_logging(root.parent / f"{root.name}-bench.log")
    out: dict[str, Any] = {"profile": "quick" if args.quick else "full", "machine": machine(), "workdir": str(root)}
    async with SandboxHost(root) as host:
        await host.seed(chats=20, mails=2)
        await phase(host, QUICK if args.quick else FULL, root, out)
    m = out["machine"]
    print(f"agentseat Event Hubs benchmark ({out['profile']}) on {m['cpu']}, {m['cores']} cores, Python "
          f"{m['python']}, commit {m['commit']}; load average {m['loadavg_start']} at start, {loadavg()} at end")
    print("\n".join(lines(out)).strip("\n"))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({"profile": out["profile"], "machine": out["machine"],
                      **{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures(out).items()}},
                     default=str))
    return 0
