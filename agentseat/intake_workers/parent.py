"""The runtime's side of its intake processes: start them, feed them, answer them, restart them.

Why they exist: at one notification per POST, the work between the socket and the inbox
(aiohttp, the validation-token check, parsing, decryption, the SQLite write) holds the GIL for
about 1 ms an item, so one process takes about a third of the rate its crypto alone would allow
(bench/, issue 16). Intake processes accept on the runtime's own listening socket and do that
work with their own GIL; the runtime keeps everything with state (subscriptions, lifecycle,
confirmations, fetches, the sinks). `AGENTSEAT_INTAKE_PROCESSES` says how many processes take
POSTs in all (the runtime counts as one).

For each process, `IntakeWorkers` sends the hello (settings, key ring, trust policy, gate and
subscriptions; child.py waits for it before it accepts), then the subscriptions, policy and gate
again whenever they change (checked every `UPDATE_SECONDS`), and serves its requests and notes
(wire.py). A process that exits is started again, with a growing pause. Stopping the runtime
closes the control lines; each process finishes its in-flight POSTs and exits.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from anyio.abc import Process

from agentseat.channels.normalize import ChannelRef
from agentseat.graph.subscription import KnownSubscription

from .wire import Wire, WireClosed, export_ring, known_rows, pack_settings, policy_state

if TYPE_CHECKING:
    from agentseat.access import AccessPolicy
    from agentseat.config import Settings
    from agentseat.runtime.crypto import KeyRing
    from agentseat.runtime.delivery_watch import DeliveryWatch
    from agentseat.runtime.inbox import Inbox
    from agentseat.runtime.intake import Intake
    from agentseat.runtime.normalize import TrustPolicy
    from agentseat.runtime.pipeline import NotificationPipeline
    from agentseat.runtime.webhook import WebhookServer, WebhookStats
    from agentseat.tenant_facts import TenantFacts

__all__ = ["IntakeWorkers", "Lent"]

log = structlog.get_logger(__name__)

UPDATE_SECONDS = 0.25  # a changed subscription reaches the processes this soon (unknown ids come back meanwhile)
STOP_GRACE = 6.0  # a process's webhook gets 5 s to finish its POSTs (runtime/webhook.py), then it is killed
MAX_BACKOFF = 60.0
STEADY_SECONDS = 60.0  # a process that ran this long starts again at once when it exits


@dataclass(kw_only=True)
class Lent:
    """What the runtime lends its intake processes (runtime/app.py builds it)."""

    settings: Settings
    ring: KeyRing
    policy: TrustPolicy
    access: AccessPolicy
    known: Mapping[str, KnownSubscription]
    pipeline: NotificationPipeline  # what comes back whole is processed here
    inbox: Inbox
    intake: Intake
    delivery: DeliveryWatch
    on_lifecycle: Callable[[KnownSubscription, str], Awaitable[None]]
    on_mail_fetch: Callable[[str, dict[str, Any]], Awaitable[None]]
    on_chat_fetch: Callable[[str, str], Awaitable[None]]
    on_channel_fetch: Callable[[ChannelRef], Awaitable[None]]
    resync: Callable[[str, str], object]
    facts: TenantFacts  # what the processes see of the tenant (the validation tokens' claims) is recorded here


@dataclass
class _Child:
    slot: int
    pid: int = 0
    starts: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


class IntakeWorkers:
    """`count` intake processes beside the runtime, each kept running until `run` is cancelled."""

    def __init__(self, lent: Lent, count: int) -> None:
        self._lent = lent
        self._children = [_Child(slot) for slot in range(count)]
        self._webhook: WebhookServer | None = None

    async def run(self, webhook: WebhookServer) -> None:
        """Serve `webhook`'s shared socket with the processes; call once the sponsors are known."""
        if webhook.socket is None:
            raise RuntimeError("the webhook must share its socket (run(share=True)) for intake processes")
        if sys.platform == "win32":  # a listening socket cannot be handed to a child by file descriptor there
            log.error("intake_processes_unsupported", platform=sys.platform,
                      fix="set AGENTSEAT_INTAKE_PROCESSES=1; this process takes every POST meanwhile")
            return
        self._webhook = webhook
        try:
            async with anyio.create_task_group() as tg:
                for child in self._children:
                    tg.start_soon(self._keep, child, webhook.socket)
        finally:  # how the POSTs were shared out (the kernel decides, connection by connection)
            log.info("intake_processes_stopped", runtime_posts=webhook.stats.posts,
                     process_posts=[c.stats.get("public", {}).get("posts", 0) for c in self._children])

    async def health(self, own: WebhookStats) -> dict[str, Any]:
        """GET /health for every process that takes POSTs: their counts added up."""
        counts = dict(own.public())
        failing = own.failing
        for child in self._children:
            for name, value in child.stats.get("public", {}).items():
                counts[name] = counts.get(name, 0) + value
            failing = failing or bool(child.stats.get("failing"))
        return {"ok": not failing, "counts": counts}

    def describe(self) -> list[dict[str, Any]]:
        """What `status` shows: each process, its starts and what it took."""
        return [{"pid": c.pid, "starts": c.starts, **c.stats.get("public", {}), "forwarded": c.stats.get("forwarded", 0),
                 "intake": c.stats.get("intake", {}), "notifications": c.stats.get("notifications", {})}
                for c in self._children]

    # --- one process -----------------------------------------------------------------------------
    async def _keep(self, child: _Child, listener: socket.socket) -> None:
        backoff = 1.0
        while True:
            began = time.monotonic()
            try:
                code = await self._once(child, listener)
                log.warning("intake_process_exited", slot=child.slot, pid=child.pid, code=code)
            except OSError as exc:  # could not start it (no interpreter, no file descriptors)
                log.error("intake_process_failed", slot=child.slot, error=str(exc)[:200])
            backoff = 1.0 if time.monotonic() - began > STEADY_SECONDS else backoff
            child.stats = {}
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _once(self, child: _Child, listener: socket.socket) -> int | None:
        ours, theirs = socket.socketpair()
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "agentseat.intake_workers.child", str(theirs.fileno()), str(listener.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,  # stdout may be MCP's
                pass_fds=(theirs.fileno(), listener.fileno()))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        child.pid, child.starts = process.pid, child.starts + 1
        wire = await Wire.from_socket(ours)
        log.info("intake_process_started", slot=child.slot, pid=process.pid)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._serve, wire, child, tg.cancel_scope)
                await process.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await wire.aclose()  # the process sees the line close: it finishes its POSTs and exits
                await _stop(process)
        return process.returncode

    async def _serve(self, wire: Wire, child: _Child, scope: anyio.CancelScope) -> None:
        lent = self._lent
        update = self._update()
        await wire.send({"t": "hello", "settings": pack_settings(lent.settings), "keys": export_ring(lent.ring),
                         **update})
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._push_updates, wire, update)
            try:
                while True:
                    message = await wire.receive()
                    if message["t"] == "forward":
                        tg.start_soon(self._forward, wire, message)
                    else:
                        await self._note(wire, child, message)
            except WireClosed:
                tg.cancel_scope.cancel()
        scope.cancel()  # the process is gone or going: wait for its exit code

    def _update(self) -> dict[str, Any]:
        lent = self._lent
        return {"known": known_rows(lent.known), "policy": policy_state(lent.policy), "gate": lent.access.snapshot()}

    async def _push_updates(self, wire: Wire, sent: dict[str, Any]) -> None:
        while True:
            await anyio.sleep(UPDATE_SECONDS)
            now = self._update()
            if now["known"] != sent["known"] and not await wire.notify({"t": "known", "rows": now["known"]}):
                return
            if (now["policy"], now["gate"]) != (sent["policy"], sent["gate"]) and not await wire.notify(
                    {"t": "policy", "policy": now["policy"], "gate": now["gate"]}):
                return
            sent = now

    async def _forward(self, wire: Wire, message: dict[str, Any]) -> None:
        """A body the process handed back: processed here as if this process had taken the POST."""
        body = str(message["body"]).encode("utf-8", "surrogateescape")
        try:
            result = await self._lent.pipeline.process(body, lifecycle_endpoint=bool(message.get("lifecycle")))
        except Exception as exc:  # a bug: the process answers 5xx, so Graph delivers again
            log.error("intake_forward_failed", error=type(exc).__name__)
            await wire.notify({"t": "reply", "id": message["id"], "retry": True})
            return
        if self._webhook is not None:
            self._webhook.stats.add(result)
        await wire.notify({"t": "reply", "id": message["id"], "retry": result.retry, "received": result.received,
                           "accepted": result.accepted, "stored": result.stored})

    async def _note(self, wire: Wire, child: _Child, message: dict[str, Any]) -> None:
        lent, kind = self._lent, message["t"]
        if kind == "settled":
            for event_kind, key, created_at in message["notified"]:
                lent.delivery.notified_at(event_kind, key, created_at)
            if message["stored"]:
                lent.inbox.wake()  # the sinks in this process: the process's commit is already visible
            if message["pending"]:
                lent.intake.note_pending(int(message["pending"]))
        elif kind == "stats":
            child.stats = message
        elif kind == "health":
            await wire.notify({"t": "reply", "id": message["id"],
                               "health": await self.health(self._webhook.stats) if self._webhook else {}})
        elif kind == "fetch":
            await self._fetch(message)
        elif kind == "lifecycle":
            known = lent.known.get(str(message["id"]))
            if known is not None:  # else retired meanwhile: its gate would drop it too
                await lent.on_lifecycle(known, str(message["event"]))
        elif kind == "resync":
            lent.resync(str(message["kind"]), str(message["reason"]))
        elif kind == "fact":
            lent.facts.record(str(message["key"]), message["value"])
        else:
            log.warning("intake_process_note_unknown", note=json.dumps(kind)[:40])

    async def _fetch(self, message: dict[str, Any]) -> None:
        lent = self._lent
        if message["kind"] == "mail":
            await lent.on_mail_fetch(str(message["id"]), dict(message.get("partial") or {}))
        elif message["kind"] == "teams":
            await lent.on_chat_fetch(str(message["chat"]), str(message["id"]))
        else:
            await lent.on_channel_fetch(ChannelRef(*(str(part) for part in message["ref"])))


async def _stop(process: Process) -> None:
    with anyio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    log.warning("intake_process_killed", pid=process.pid)
    process.kill()
    await process.wait()
