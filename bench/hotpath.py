"""The webhook hot path, step by step, in-process: what one notification costs where.

The runtime's pipeline functions (runtime/pipeline.py, runtime/inbox.py,
tools/channel.py) are called directly on genuine sandbox-built notifications,
and each step is timed alone: parse, screen (clientState), validation tokens,
decrypt, normalise, store (one SQLite commit), claim for the channel, build the
MCP push, one structlog line, one worker-thread hop. Then the whole
`NotificationPipeline.process`, as the webhook calls it. This is the deterministic
half of the profile; `profile.py` samples the real process under load.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import anyio

from agentseat.graph.client import ssl_context
from agentseat.identity.keys import KeyStore
from agentseat.runtime.crypto import KeyRing
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.normalize import TrustPolicy
from agentseat.runtime.pipeline import (
    KnownSubscription,
    NotificationPipeline,
    check_tokens,
    decrypt_items,
    parse_collection,
    plan_actions,
    screen_items,
)
from agentseat.runtime.verify import JwksCache
from agentseat.tools.channel import ChannelNotification, ChannelParams, ChannelSink, envelope

from . import sink_hops
from .harness import SandboxHost, quiet_logging, settings_from_env

STEPS = ("parse", "screen", "tokens", "decrypt", "normalise", "store", "claim", "push_build", "log_line")


def _log_line_seconds(samples: int = 2000) -> float:
    """One info line through agentseat's real structlog pipeline (redaction included), to a null stream."""
    import io

    import structlog

    from agentseat.logging import configure

    sink = io.StringIO()
    configure("info", "console", stream=sink)
    log = structlog.get_logger("bench.hotpath")
    began = time.perf_counter()
    for i in range(samples):
        log.info("channel_pushed", seq=i, kind="teams", trust="colleague")
    took = (time.perf_counter() - began) / samples
    quiet_logging()
    return took


def _agent_keys(settings: Any) -> tuple[Any, KeyRing, dict[str, str]]:
    """The agent's certificate, its key ring, and a synthetic subscription encrypting for it."""
    cert = KeyStore(settings).load(settings.cert_thumbprint)
    ring = KeyRing()
    ring.add(cert.private_key, certificate=cert.certificate, certificate_id=cert.sha1_thumbprint)
    return cert, ring, {"id": str(uuid.uuid4()), "client_state": "bench-state", "der_b64": cert.der_b64,
                        "certificate_id": cert.sha1_thumbprint}


def _target(settings: Any, first_body: bytes, inbox_path: Path) -> tuple[dict[str, KnownSubscription], TrustPolicy, Inbox]:
    """The subscription the bodies name, the agent's trust policy and an inbox with the channel's group."""
    sub_id = json.loads(first_body)["value"][0]["subscriptionId"]
    own = {settings.agent_user_id.lower(), settings.agent_user_upn.lower()} - {""}
    policy = TrustPolicy(tenant_id=settings.tenant_id, own_ids=own,
                         domains={settings.agent_user_upn.rpartition("@")[2].lower()})
    inbox = Inbox(inbox_path, own_ids=own)
    inbox.ensure_group("channel", 0)
    return {sub_id: KnownSubscription(sub_id, "teams", "bench-state")}, policy, inbox


async def measure(host: SandboxHost, env: dict[str, str], workdir: Path, *, posts: int) -> dict[str, Any]:
    """Per-step medians in microseconds, per POST and per item, for batches of 1 and 20."""
    settings = settings_from_env(env)
    cert, ring, synthetic = _agent_keys(settings)

    async def bodies(posts: int, batch: int) -> list[tuple[list[str], bytes]]:
        return await host.notification_bodies(posts, batch, synthetic=synthetic)

    first = (await bodies(1, 1))[0][1]
    known, policy, inbox = _target(settings, first, workdir / "hotpath-inbox.db")
    results: dict[str, Any] = {}
    log_line = _log_line_seconds()
    try:
        async with aiohttp.ClientSession() as http:
            jwks = JwksCache(settings.jwks_url, http, ssl=ssl_context(settings))
            pipeline = NotificationPipeline(settings=settings, inbox=inbox, keyring=ring, jwks=jwks,
                                            policy=policy, subscriptions=known)
            # Warm: the first token fetches the JWKS.
            await pipeline.process(first, lifecycle_endpoint=False)
            hop = []
            for _ in range(200):
                began = time.perf_counter()
                await anyio.to_thread.run_sync(lambda: None)
                hop.append(time.perf_counter() - began)
            results["thread_hop_us"] = round(median(hop) * 1e6, 1)
            results["log_line_us"] = round(log_line * 1e6, 1)
            results["rsa_threads"] = await anyio.to_thread.run_sync(rsa_threads, cert.private_key)
            results["channel_arrivals"] = await sink_hops.measure()
            for batch in (1, 20):
                steps: dict[str, list[float]] = {s: [] for s in STEPS}
                for _, body in await bodies(posts, batch):
                    t0 = time.perf_counter()
                    collection = parse_collection(body)
                    t1 = time.perf_counter()
                    items, _ = screen_items(collection, known, tenant_id=settings.tenant_id, lifecycle_endpoint=False)
                    t2 = time.perf_counter()
                    items = (await check_tokens(collection, items, jwks=jwks, settings=settings)).items
                    t3 = time.perf_counter()
                    items, _ = decrypt_items(items, ring)
                    t4 = time.perf_counter()
                    plan = plan_actions(items, policy)
                    t5 = time.perf_counter()
                    inbox.append(plan.events)
                    t6 = time.perf_counter()
                    events = inbox.claim_next("channel", "bench", batch)
                    t7 = time.perf_counter()
                    for event in events:
                        ChannelNotification(params=ChannelParams(**envelope(event))).model_dump_json(
                            by_alias=True, exclude_none=True)
                    t8 = time.perf_counter()
                    assert len(events) == batch, "every notification must become one pushed event"
                    for name, took in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6,
                                                  t8 - t7, log_line * batch), strict=True):
                        steps[name].append(took)
                whole = []
                for _, body in await bodies(posts, batch):
                    began = time.perf_counter()
                    result = await pipeline.process(body, lifecycle_endpoint=False)
                    whole.append(time.perf_counter() - began)
                    assert result.stored == batch
                variants = await _variants(bodies, batch, inbox, pipeline, known, jwks, ring, policy, settings,
                                           posts)
                per_post = {name: round(median(v) * 1e6, 1) for name, v in steps.items()}
                total = sum(per_post.values())
                results[f"batch{batch}"] = {
                    "steps_us_per_post": per_post,
                    "steps_us_per_item": {k: round(v / batch, 1) for k, v in per_post.items()},
                    "share": {k: round(v / total, 3) for k, v in per_post.items()},
                    "sum_of_steps_us_per_item": round(total / batch, 1),
                    "process_us_per_post": round(median(whole) * 1e6, 1),
                    "process_us_per_item": round(median(whole) * 1e6 / batch, 1),
                    "variants": variants,
                }
    finally:
        inbox.close()
    return results


async def _variants(bodies: Any, batch: int, inbox: Inbox, pipeline: NotificationPipeline, known: Any, jwks: JwksCache,
                    ring: KeyRing, policy: TrustPolicy, settings: Any, posts: int) -> dict[str, Any]:
    """CPU (all threads, `time.process_time`) and wall time per item of the webhook and channel
    paths as the runtime runs them, and of bench-only variants with fewer worker-thread hops.

    - webhook, current: `NotificationPipeline.process` (tokens on the loop; decrypt, then
      store, each in its own worker-thread call).
    - webhook, one hop: the same steps, decrypt + normalise + store in one worker-thread call.
    - channel, current: `ChannelSink`'s loop with its own delivery and log line: since the fold,
      a batch is claimed (acknowledging the previous one in the same transaction) in one
      worker-thread call, and logged in one line; `wait_for_new` only when a claim came back empty.
    - channel, one hop: the same steps written out inline (`claim_next(ack=...)`), the reference;
      before the fold, "current" was three worker-thread calls (`latest_seq`, claim, ack), two
      commits and one log line per event.
    - stdout, current: mcp's stdio transport (`anyio.wrap_file` write + flush: two hops per push).
    - stdout, one hop: `stdout_direct`, a non-blocking write on the loop (no hop at all).
    """
    import structlog

    log = structlog.get_logger("bench.hotpath")
    has_ack = hasattr(inbox, "ack")
    fused_ack = "ack" in inspect.signature(inbox.claim_next).parameters
    out: dict[str, Any] = {}

    samples: dict[str, list[tuple[float, float]]] = {}

    async def timed(label: str, run: Any, items: int) -> None:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        samples.setdefault(label, []).append((cpu * 1e6 / items, wall * 1e6 / items))

    async def webhook_current(chunk: Any) -> None:
        for _, body in chunk:
            await pipeline.process(body, lifecycle_endpoint=False)

    async def webhook_one_hop(chunk: Any) -> None:
        for _, body in chunk:
            collection = parse_collection(body)
            items, _ = screen_items(collection, known, tenant_id=settings.tenant_id, lifecycle_endpoint=False)
            items = (await check_tokens(collection, items, jwks=jwks, settings=settings)).items

            def work(items: Any = items) -> Any:
                kept, _ = decrypt_items(items, ring)
                return inbox.append(plan_actions(kept, policy).events)

            await anyio.to_thread.run_sync(work)

    async def serialise(params: dict[str, Any]) -> None:
        ChannelNotification(params=ChannelParams(**params)).model_dump_json(by_alias=True, exclude_none=True)

    async def channel_current(events_total: int) -> None:
        # `ChannelSink.__call__`'s loop, step for step, with the sink's own delivery and log line.
        sink = ChannelSink(batch=10, claimant="bench", group_policy="all")
        sink.attach(serialise)
        done, handled, position = 0, [], inbox.group_position("channel") or 0
        while done < events_total:
            if not handled:
                await inbox.wait_for_new(position)
            events = await inbox.aclaim_next("channel", "bench", 10, ack=handled)
            handled = await sink._deliver_batch(events)
            position = max([position, *(e.seq for e in events)])
            done += len(events)
        await inbox.aack("channel", handled)

    async def channel_one_hop(events_total: int) -> None:
        done, previous = 0, []

        def claim(acked: list[int]) -> Any:
            if fused_ack:
                return inbox.claim_next("channel", "bench", 10, ack=acked)  # one transaction
            if has_ack and acked:
                inbox.ack("channel", acked)  # an older inbox: two transactions in the one hop
            return inbox.claim_next("channel", "bench", 10)

        while done < events_total:
            events = await anyio.to_thread.run_sync(claim, previous)
            for event in events:
                ChannelNotification(params=ChannelParams(**envelope(event))).model_dump_json(
                    by_alias=True, exclude_none=True)
            log.info("channel_pushed", count=len(events))
            previous = [e.seq for e in events]
            done += len(events)
        if has_ack and previous:
            await anyio.to_thread.run_sync(inbox.ack, "channel", previous)

    # mcp's stdio_server writes each message with `await stdout.write(...)` and `await
    # stdout.flush()` on an anyio.wrap_file: two worker-thread calls per push. The variant
    # writes the same line to the same kind of pipe directly (a non-blocking fd; a line
    # is far smaller than the pipe buffer, so the write does not wait).
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    drain = threading.Thread(target=_drain, args=(read_fd,), daemon=True)
    drain.start()
    wrapped = anyio.wrap_file(os.fdopen(os.dup(write_fd), "w", encoding="utf-8"))
    line = ChannelNotification(params=ChannelParams(content="x" * 300, meta={"chat_id": "c", "message_id": "m",
                               "user": "u", "ts": "t", "kind": "teams"})).model_dump_json(by_alias=True) + "\n"

    async def stdout_current(count: int) -> None:
        for _ in range(count):
            await wrapped.write(line)
            await wrapped.flush()

    async def stdout_direct(count: int) -> None:
        data = line.encode()
        for _ in range(count):
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(write_fd, view):]
                except BlockingIOError:
                    await anyio.wait_writable(write_fd)  # type: ignore[attr-defined]

    # Interleaved rounds, medians reported: a noisy neighbour hits both variants alike.
    restore = _info_logging_to_null()
    try:
        rounds = 4
        per = max(3, posts // (2 * rounds))
        n = per * batch
        for r in range(rounds):
            order = (("current", webhook_current, channel_current, stdout_current),
                     ("one_hop", webhook_one_hop, channel_one_hop, stdout_direct))
            for name, webhook, channel, stdout in order if r % 2 == 0 else order[::-1]:
                chunk = await _fresh(bodies, per, batch)
                await timed(f"webhook_{name}", lambda webhook=webhook, chunk=chunk: webhook(chunk), n)
                await timed(f"channel_{name}", lambda channel=channel: channel(n), n)
                await timed(f"stdout_{name}", lambda stdout=stdout: stdout(n), n)
    finally:
        restore()
        await wrapped.aclose()
        os.close(write_fd)
    for label, values in samples.items():
        out[label] = {"cpu_us_per_item": round(median(v[0] for v in values), 1),
                      "wall_us_per_item": round(median(v[1] for v in values), 1)}
    for path in ("webhook", "channel", "stdout"):
        now, fused = out[f"{path}_current"]["cpu_us_per_item"], out[f"{path}_one_hop"]["cpu_us_per_item"]
        out[f"{path}_cpu_saving"] = round(1 - fused / now, 3) if now else None
    return out


def rsa_threads(private_key: Any, calls: int = 300) -> dict[str, Any]:
    """Whether the pinned `cryptography` releases the GIL in RSA-OAEP decrypt, and what a second
    thread adds (runtime/crypto.py keeps the figures; check again whenever the pin moves).

    `turns`: with a 10-second switch interval, two threads that never release the GIL take one
    turn each (1 switch); a call that releases it lets them alternate (tens to `calls`
    switches). Counted, not timed, so a loaded machine cannot fake it. `speedup`: decrypts per
    second of two threads over one, which needs an idle second core to show.
    """
    import sys

    import cryptography
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding as asym_padding

    oaep = asym_padding.OAEP(mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    blob = private_key.public_key().encrypt(os.urandom(32), oaep)

    def run(threads: int, record: list[int] | None = None) -> float:
        barrier = threading.Barrier(threads)

        def work(i: int) -> None:
            barrier.wait()
            for _ in range(calls):
                private_key.decrypt(blob, oaep)
                if record is not None:
                    record.append(i)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        began = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        return threads * calls / (time.perf_counter() - began)

    order: list[int] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        run(2, order)
    finally:
        sys.setswitchinterval(interval)
    one, two = max(run(1) for _ in range(3)), max(run(2) for _ in range(3))
    return {"cryptography": cryptography.__version__, "turns": sum(a != b for a, b in zip(order, order[1:])),
            "calls_per_thread": calls, "one_thread_per_s": round(one), "two_threads_per_s": round(two),
            "speedup": round(two / one, 2), "cores": os.cpu_count()}


def _drain(fd: int) -> None:
    with os.fdopen(fd, "rb") as pipe:
        while pipe.read(65536):
            pass


async def _fresh(bodies: Any, posts: int, batch: int) -> Any:
    return await bodies(posts, batch)


def _info_logging_to_null() -> Any:
    """Info logging through agentseat's real pipeline into a null stream (as the runtime logs to
    stderr); returns the function that restores the bench's quiet logging."""
    import io

    from agentseat.logging import configure

    configure("info", "console", stream=io.StringIO())
    return quiet_logging


# --- `python -m bench hotpath`: the same path under cProfile ----------------------------------------
async def profile_path(posts: int, batch: int, top: int) -> str:
    """cProfile of `NotificationPipeline.process` and the channel sink's claim + push build for
    `posts` POSTs of `batch` items, with worker-thread calls run inline so one profiler sees all
    of it (the hop itself is `thread_hop_us` above). Returns pstats' top-`top` by own and by
    cumulative time, with per-item microseconds."""
    import cProfile
    import io
    import pstats
    import tempfile

    import agentseat.runtime.pipeline as pipeline_module

    with tempfile.TemporaryDirectory(prefix="agentseat-hotpath-") as tmp:
        root = Path(tmp)
        async with SandboxHost(root) as host:
            env = await host.provision(root / "agent")
            settings = settings_from_env(env)
            cert, ring, synthetic = _agent_keys(settings)
            all_bodies = await host.notification_bodies(posts + 1, batch, synthetic=synthetic)
            known, policy, inbox = _target(settings, all_bodies[0][1], root / "profile-inbox.db")

            class Inline:
                @staticmethod
                async def run_sync(func: Any, *args: Any, **_: Any) -> Any:
                    return func(*args)

            class InlineAnyio:
                to_thread = Inline

                def __getattr__(self, name: str) -> Any:
                    return getattr(anyio, name)

            saved = pipeline_module.anyio
            pipeline_module.anyio = InlineAnyio()  # type: ignore[assignment]
            restore = _info_logging_to_null()
            try:
                async with aiohttp.ClientSession() as http:
                    jwks = JwksCache(settings.jwks_url, http, ssl=ssl_context(settings))
                    pipeline = NotificationPipeline(settings=settings, inbox=inbox, keyring=ring, jwks=jwks,
                                                    policy=policy, subscriptions=known)
                    await pipeline.process(all_bodies[0][1], lifecycle_endpoint=False)  # fetches the JWKS
                    sink = ChannelSink(batch=10, claimant="bench", group_policy="all")

                    async def serialise(params: dict[str, Any]) -> None:
                        ChannelNotification(params=ChannelParams(**params)).model_dump_json(
                            by_alias=True, exclude_none=True)

                    sink.attach(serialise)
                    handled = await sink._deliver_batch(inbox.claim_next("channel", "bench", 10))
                    profiler = cProfile.Profile()
                    cpu0 = time.process_time()
                    profiler.enable()
                    for _, body in all_bodies[1:]:
                        await pipeline.process(body, lifecycle_endpoint=False)
                        events = inbox.claim_next("channel", "bench", 10, ack=handled)
                        handled = await sink._deliver_batch(events)
                    profiler.disable()
                    cpu = time.process_time() - cpu0
            finally:
                pipeline_module.anyio = saved  # type: ignore[assignment]
                restore()
                inbox.close()
    items = posts * batch
    out = io.StringIO()
    out.write(f"batch {batch}: {posts} POSTs, CPU {cpu * 1e6 / items:.1f} us per item (profiled)\n")
    for order in ("tottime", "cumulative"):
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order)
        out.write(f"\n--- by {order} (us per item = column / {items} items) ---\n")
        stats.print_stats(top)
    return out.getvalue()


def main(argv: list[str]) -> int:
    """`python -m bench hotpath [--posts N] [--batch B] [--top K]`: the cProfile of the hot path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench hotpath", description=profile_path.__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=400)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--steps", action="store_true", help="run `measure` (the step table and variants) instead")
    args = parser.parse_args(argv)
    quiet_logging()
    if args.steps:
        print(json.dumps(anyio.run(_measure_alone, args.posts), indent=1))
    else:
        print(anyio.run(profile_path, args.posts, args.batch, args.top))
    return 0


async def _measure_alone(posts: int) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agentseat-hotpath-") as tmp:
        async with SandboxHost(Path(tmp)) as host:
            env = await host.provision(Path(tmp) / "agent")
            return await measure(host, env, Path(tmp), posts=posts)
