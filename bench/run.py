"""The benchmark run: every figure of issue #6 (items 1-4) against one sandbox, in order.

First this machine's floors (bench/floors.py: crypto, loopback, commit, pipe, imports; issue 16).
Phases, each with a runtime of its own (a fresh agent state dir, `agentseat serve` spawned anew):
1. webhook: cold start, idle RSS, latency at 10 msg/s, an idle window, one renewal notice per subscription;
2. poll at entrabot's intervals (5 s / 60 s): an idle window, then latency;
3. poll at our defaults: an idle window, then latency;
4. more cold starts and a restart (full profile only);
5. throughput for batches of 1 and 20, peak RSS, and a py-spy profile (full profile, if installed);
6. the hot path step by step, in-process;
7. latency by kind of event (a DM, its edit, a channel mention) in one webhook runtime;
8. document reading: docx and pdf text extraction throughput and peak memory (bench/documents.py);
9. a large upload through `upload_file`'s code path: throughput and the memory it adds (bench/files.py);
10. Event Hubs beside webhook: latency, throughput with one and two consumer processes, idle Graph and
   AMQP cost (bench/eventhub.py; `python -m bench eventhub` runs it alone).
11. after 6: trust confirmation and access policy per item (bench/gates.py); at the end, the clock's
    idle cost with 1,000 pending promises (bench/promises.py).
Last, the floors again, with the same samples: the goals are judged against the mean of the two
measurements (bench/ratios.py `mean_floors`), and both are kept (`floors_start`, `floors_end`) so
the report shows how far the machine drifted during the run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from agentseat.config import Settings

from . import coldstart, documents, eventhub, floors, gates, hotpath, idle, kinds, latency, profile, promises
from . import ratios, throughput
from . import files as files_bench
from .harness import SandboxHost, fresh_dir, free_port, import_seconds, loadavg, machine, memory_mb, serve
from .latency import poll_env, webhook_env


@dataclass(frozen=True)
class Profile:
    name: str
    latency_seconds: float  # traffic per mode, at 10 msg/s
    warmup_seconds: float  # webhook traffic before measuring (first requests are slower)
    idle_seconds: float  # idle window per poll mode
    webhook_idle_seconds: float  # idle window in webhook mode (renewal notices are triggered, not waited for)
    step_seconds: float  # per throughput step
    bisect: int  # throughput refinement steps after the first failure
    hotpath_posts: int
    extra_cold_starts: int
    restart: bool
    profile_seconds: float  # py-spy; 0 skips
    import_repeat: int = 3
    ladder_start: tuple[float, float] = (50.0, 100.0)  # items/s for batches of 1 and 20
    kind_rounds: int = 30  # DM, edit and channel mention, one at a time


QUICK = Profile("quick", latency_seconds=5, warmup_seconds=2, idle_seconds=6, webhook_idle_seconds=5,
                step_seconds=2, bisect=3, hotpath_posts=24, extra_cold_starts=0, restart=False, profile_seconds=0,
                import_repeat=1, ladder_start=(100.0, 200.0), kind_rounds=5)
FULL = Profile("full", latency_seconds=60, warmup_seconds=10, idle_seconds=120, webhook_idle_seconds=60,
               step_seconds=6, bisect=3, hotpath_posts=200, extra_cold_starts=4, restart=True, profile_seconds=10)

#: Batch 1 is measured again with this many processes taking POSTs (throughput["batch1_two_processes"]).
INTAKE_PROCESSES = 2
TWO_PROCESSES = "batch1_two_processes"

#: The clock's line (issue 16, point 4): its idle cost with this many promises pending, over a window.
CLOCK_PROMISES = 1000
CLOCK_SECONDS = {"quick": 5.0, "full": 30.0}

_DEFAULTS = Settings.model_fields
DEFAULT_CHAT_POLL = float(_DEFAULTS["chat_poll_seconds"].default)
DEFAULT_MAIL_POLL = float(_DEFAULTS["mail_poll_seconds"].default)


_started = time.monotonic()


def say(text: str) -> None:
    """Progress goes to stderr: stdout is the report."""
    print(f"[bench {time.monotonic() - _started:6.1f}s] {text}", file=sys.stderr, flush=True)


async def _warm(host: SandboxHost, served: Any, seconds: float) -> None:
    if seconds > 0:
        traffic = await latency.steady_dms(host, seconds, tag="warm-up")
        await served.wait_for(traffic.sent, 30)


async def _wait_subscriptions(host: SandboxHost, count: int = 2, timeout: float = 120) -> None:
    with anyio.fail_after(timeout):
        while len(await host.live_subscriptions()) < count:
            await anyio.sleep(0.05)


async def _measure_floors(p: Profile, root: Path) -> dict[str, Any]:
    """The floors with the profile's samples: the same at the start and at the end, so the two compare."""
    return await floors.measure(root, samples=floors.SAMPLES[p.name], paced_samples=floors.PACED_SAMPLES[p.name],
                                import_repeat=max(p.import_repeat, 2))


async def floors_phase(p: Profile, root: Path, out: dict[str, Any]) -> None:
    say("floors: crypto, loopback, commit, pipe, imports")  # issue 16: the goals are ratios to these
    out["floors_start"] = await _measure_floors(p, root / "floors")
    out["floors"] = out["floors_start"]  # what judges until the end is measured


async def floors_again_phase(p: Profile, root: Path, out: dict[str, Any]) -> None:
    """The floors at the end of the run; the goals are then judged against the mean of both ends."""
    say("floors again, at the end: how far the machine drifted during the run")
    try:
        end = await _measure_floors(p, root / "floors-end")  # a directory of its own: fresh databases, as at the start
    except Exception as exc:  # noqa: BLE001 - a run's figures outweigh its second yardstick; cancellation still ends it
        say(f"floors at the end failed ({type(exc).__name__}: {exc}); the goals are judged against the start alone")
        out["floors_end"] = {"error": f"{type(exc).__name__}: {exc}"}
        return
    out["floors_end"] = end
    out["floors"] = ratios.mean_floors(out["floors_start"], end)


async def webhook_phase(host: SandboxHost, p: Profile, root: Path, out: dict[str, Any]) -> None:
    say("webhook: cold start, latency, idle")
    env = webhook_env(await host.provision(root / "agent-webhook"))
    async with coldstart.cold_serve(host, env, root / "webhook", "serve") as (served, marks):
        out["cold_start"]["runs"].append(marks.as_dict())
        out["cold_start"]["first_run"] = marks.detail()
        out["rss"]["idle"] = await coldstart.idle_rss(served)
        await _warm(host, served, p.warmup_seconds)
        out["latency"]["webhook"] = await latency.run_traffic(host, served, p.latency_seconds, 15, with_sends=True,
                                                              tag="webhook")
        out["rss"]["after_latency"] = memory_mb(served.pid)
        say(f"webhook: latency with Graph answering in {latency.GRAPH_MS:g} ms (the sponsor's confirmation GET)")
        out["latency"]["webhook_graph_latency"] = await latency.run_traffic(
            host, served, p.latency_seconds, 15, with_sends=False, tag="webhook-graph", graph_ms=latency.GRAPH_MS)
        say("webhook: idle window")
        measured = await idle.window(host, p.webhook_idle_seconds)
        reauth = await idle.reauthorize_cost(host, served)
        out["idle"]["webhook"] = {**idle.webhook_hourly(measured, reauth), "window": measured,
                                  "reauthorize_notices": reauth}
    await host.drop_subscriptions()


async def poll_phase(host: SandboxHost, p: Profile, root: Path, out: dict[str, Any], name: str,
                     chat: float, mail: float) -> None:
    say(f"{name}: idle, latency (chat every {chat:g} s, mail every {mail:g} s)")
    env = poll_env(await host.provision(root / f"agent-{name}"), chat, mail)
    async with serve(env, root / name, "serve", host.now) as served:
        with anyio.fail_after(60):
            while True:
                counters = (await served.status())["poller"]
                if counters["chat_rounds"] >= 1 and counters["mail_rounds"] >= 1:
                    break
                await anyio.sleep(0.2)
        await anyio.sleep(1.0)
        before = (await served.status())["poller"]
        window = await idle.window(host, p.idle_seconds)
        after = (await served.status())["poller"]
        rounds = {"chat": after["chat_rounds"] - before["chat_rounds"],
                  "mail": after["mail_rounds"] - before["mail_rounds"]}
        out["idle"][name] = {**idle.poll_hourly(window, rounds, chat, mail), "window": window}
        out["latency"][name] = await latency.run_traffic(host, served, p.latency_seconds, chat + 10,
                                                         with_sends=False, tag=name)
        out["latency"][name]["intervals_s"] = {"chat": chat, "mail": mail}


async def cold_start_phase(host: SandboxHost, p: Profile, root: Path, out: dict[str, Any]) -> None:
    env: dict[str, str] = {}
    for i in range(p.extra_cold_starts):
        say(f"cold start {i + 2} of {p.extra_cold_starts + 1}")
        await anyio.sleep(coldstart.REST_BETWEEN_STARTS)
        env = webhook_env(await host.provision(root / f"agent-cold{i}"), free_port())
        async with coldstart.cold_serve(host, env, root / f"cold{i}", "serve") as (_, marks):
            out["cold_start"]["runs"].append(marks.as_dict())
        if i < p.extra_cold_starts - 1 or not p.restart:
            await host.drop_subscriptions()
    if p.restart and env:
        say("restart: same state, same URL, subscriptions adopted")
        await anyio.sleep(coldstart.REST_BETWEEN_STARTS)
        async with coldstart.cold_serve(host, env, root / f"cold{p.extra_cold_starts - 1}", "restart",
                                        subscriptions=0) as (_, marks):
            out["cold_start"]["restart"] = {k: v for k, v in marks.as_dict().items() if k != "subscriptions_s"}
        await host.drop_subscriptions()


async def throughput_phase(host: SandboxHost, p: Profile, root: Path, out: dict[str, Any]) -> dict[str, str]:
    say("throughput")
    port = free_port()
    env = webhook_env(await host.provision(root / "agent-throughput"), port)
    url = f"http://127.0.0.1:{port}/notifications"
    async with serve(env, root / "throughput", "serve", host.now) as served:
        await _wait_subscriptions(host)
        await _warm(host, served, p.warmup_seconds)
        results: dict[str, Any] = {}
        for batch, start, cap in ((1, p.ladder_start[0], 3200.0), (20, p.ladder_start[1], 6400.0)):
            say(f"throughput: batches of {batch}")
            results[f"batch{batch}"] = await throughput.ladder(host, served, url, batch=batch, start=start,
                                                               seconds=p.step_seconds, bisect=p.bisect, cap=cap)
        results["rss_mb"] = throughput.peak_rss(served)
        out["throughput"] = results
        if p.profile_seconds:
            best = results["batch1"]["max_zero_loss_items_per_s"] or 50.0
            say("profile: py-spy under load")
            rates = ((1, round(best * 0.7)), (20, round((results["batch20"]["max_zero_loss_items_per_s"] or 200) * 0.7)))
            out["pyspy"] = {}
            for batch, rate in rates:
                for gil in (False, True):
                    out["pyspy"][f"batch{batch}{'_gil' if gil else ''}"] = await profile.sample(
                        host, served, url, root, items_per_s=rate, batch=batch, seconds=p.profile_seconds, gil=gil)
    await host.drop_subscriptions()
    if (os.cpu_count() or 1) >= 2:  # issue 16, point 2: does a second process pay for itself at batch 1?
        say(f"throughput: batches of 1, {INTAKE_PROCESSES} intake processes")
        out["throughput"][TWO_PROCESSES] = await _two_processes_ladder(host, p, root)
    return env


async def _two_processes_ladder(host: SandboxHost, p: Profile, root: Path) -> dict[str, Any]:
    """The batch-1 ladder again, with AGENTSEAT_INTAKE_PROCESSES=2: CPU counts every process."""
    port = free_port()
    env = webhook_env(await host.provision(root / "agent-throughput-x2"), port)
    env["AGENTSEAT_INTAKE_PROCESSES"] = str(INTAKE_PROCESSES)
    try:
        async with serve(env, root / "throughput-x2", "serve", host.now) as served:
            await _wait_subscriptions(host)
            await _warm(host, served, p.warmup_seconds)
            result = await throughput.ladder(host, served, f"http://127.0.0.1:{port}/notifications", batch=1,
                                             start=p.ladder_start[0], seconds=p.step_seconds, bisect=p.bisect,
                                             cap=3200.0)
            result["processes"] = len(served.pids)
            # Each process's own figures: the intake process's memory is what the setting costs.
            result["rss_mb_by_process"] = [memory_mb(pid) for pid in served.pids]
            return result
    finally:
        await host.drop_subscriptions()


async def kinds_phase(host: SandboxHost, p: Profile, root: Path, out: dict[str, Any]) -> None:
    say("latency by kind: a DM, its edit, a channel mention")
    team = await kinds.team_with_agent(host)  # before serve, so its channel is subscribed at start
    env = webhook_env(await host.provision(root / "agent-kinds"), free_port())
    async with serve(env, root / "kinds", "serve", host.now) as served:
        await _wait_subscriptions(host, 3 if team else 2)
        await _warm(host, served, p.warmup_seconds)
        out["latency"]["by_kind"] = await kinds.measure(host, served, p.kind_rounds, team)
    await host.drop_subscriptions()


async def run(p: Profile, root: Path) -> dict[str, Any]:
    fresh_dir(root)
    out: dict[str, Any] = {"profile": p.name, "machine": machine(), "workdir": str(root),
                           "cold_start": {"runs": []}, "rss": {}, "latency": {}, "idle": {}}
    say("timing imports")
    out["cold_start"]["import_s"] = import_seconds(p.import_repeat)
    await floors_phase(p, root, out)
    async with SandboxHost(root) as host:
        await host.seed(chats=20, mails=2)
        await webhook_phase(host, p, root, out)
        await poll_phase(host, p, root, out, "poll_entrabot_intervals", idle.ENTRABOT_CHAT_POLL,
                         idle.ENTRABOT_MAIL_POLL)
        await poll_phase(host, p, root, out, "poll_defaults", DEFAULT_CHAT_POLL, DEFAULT_MAIL_POLL)
        await cold_start_phase(host, p, root, out)
        env = await throughput_phase(host, p, root, out)
        await kinds_phase(host, p, root, out)
        say("hot path, step by step")
        out["hotpath"] = await hotpath.measure(host, env, root, posts=p.hotpath_posts)
        say("trust confirmation and access policy, per item")  # issue 16, point 4
        out["gates"] = await gates.measure(host, env, root / "gates", posts=p.hotpath_posts)
        # Event Hubs (issue 14): its own runtimes, after the others so its backlog of events disturbs none.
        await eventhub.phase(host, eventhub.QUICK if p is QUICK else eventhub.FULL, root, out, say)
    say("documents: docx and pdf read throughput")
    out["documents"] = await anyio.to_thread.run_sync(documents.measure, root / "documents", p is QUICK)
    say("files: a large upload through an upload session")
    out["files"] = await anyio.to_thread.run_sync(files_bench.measure, root / "files", p is QUICK)
    say(f"the clock: {CLOCK_PROMISES} pending promises, idle")  # issue 16, point 4 (bench/promises.py)
    out["clock"] = await promises.measure(CLOCK_PROMISES, CLOCK_SECONDS[p.name], fresh_dir(root / "clock"))
    out["machine"]["loadavg_end"] = loadavg()  # before the floors again, whose parallel decrypt loads both cores
    await floors_again_phase(p, root, out)
    out["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out["idle"]["entrabot"] = idle.entrabot_computed(chats=20)
    out["cold_start"].update(coldstart.summarize(out["cold_start"]["runs"]))
    say(f"done; state and logs are in {root}")
    return out
