"""An intake process: it accepts Graph's POSTs on the runtime's own socket and stores what they carry.

Started by the runtime (`python -m agentseat.intake_workers.child CONTROL_FD LISTEN_FD`, see
parent.py). It runs the same webhook and notification pipeline as the runtime, with its own
GIL: the token check, parsing, decryption and the inbox write of the POSTs it accepts. What
needs the runtime's state is handed back over the control line (wire.py):

- a POST to the lifecycle URL, and one naming a subscription this process does not know yet
  (created a moment ago), goes back whole: the runtime answers it, and Graph gets its status;
- mail and chat reads a notification asks for, lifecycle events and resyncs are one-way notes;
- after each store, a note with the keys the notifications carried (the delivery watch) and the
  pending confirmations kept in `intake.db`: the runtime wakes its sinks and its confirmations.

It waits for the runtime's hello (settings, key ring, trust policy, gate, subscriptions) before
it accepts a connection, and stops when the control line closes.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import structlog

from agentseat.access import AccessPolicy
from agentseat.channels.normalize import ChannelRef
from agentseat.graph.client import ssl_context
from agentseat.graph.subscription import KnownSubscription
from agentseat.logging import configure
from agentseat.runtime.events import Event
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.intake import Intake, Written
from agentseat.runtime.normalize import TrustPolicy
from agentseat.runtime.pipeline import NotificationPipeline, ProcessResult
from agentseat.runtime.token_fallback import TokenFallbacks
from agentseat.runtime.verify import JwksCache
from agentseat.runtime.webhook import WebhookServer, WebhookStats

from .wire import Wire, WireClosed, adopt_policy, import_ring, known_from, unpack_settings

__all__ = ["main"]

log = structlog.get_logger(__name__)

STATS_SECONDS = 1.0  # how often the runtime hears this process's counts (its /health and status)


class _Notes:
    """One-way notes to the runtime, merged while one is being sent: under load, one line a batch."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._notified: list[list[Any]] = []
        self._stored = 0
        self._pending = 0
        self._ready = anyio.Event()

    def settled(self, events: list[Event], stored: int, pending: int) -> None:
        self._notified += [[e.kind, e.key, e.created_at] for e in events]
        self._stored += stored
        self._pending += pending
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            note = {"t": "settled", "notified": self._notified, "stored": self._stored, "pending": self._pending}
            self._notified, self._stored, self._pending = [], 0, 0
            if not await self._wire.notify(note):
                return


class _FactsByWire:
    """The tenant facts the token check records (`TokenFallbacks`), kept by the runtime: one writer."""

    def __init__(self, note: Callable[[dict[str, Any]], None]) -> None:
        self._note = note

    def record(self, key: str, value: Any) -> None:
        self._note({"t": "fact", "key": key, "value": value})


class _ReportingStore:
    """The pipeline's store: this process's `Intake`, and a note to the runtime after each write."""

    def __init__(self, intake: Intake, notes: _Notes) -> None:
        self._intake, self._notes = intake, notes
        self.write = intake.write

    async def settle(self, events: list[Event], written: Written) -> list[Event]:
        stored: list[Event] = []
        try:
            stored = await self._intake.settle(events, written)
        finally:  # pending rows written before a failed append are the runtime's to confirm all the same
            if events:
                self._notes.settled(events, len(stored), written.added or 0)
        return stored


class _Forwarding:
    """The webhook's processor here: this process's pipeline, or the runtime's for what it cannot judge."""

    def __init__(self, pipeline: NotificationPipeline, wire: Wire) -> None:
        self._pipeline, self._wire = pipeline, wire
        self.forwarded = 0

    def reject(self, reason: str, *, lifecycle_endpoint: bool = False) -> ProcessResult:
        return self._pipeline.reject(reason, lifecycle_endpoint=lifecycle_endpoint)

    async def process(self, body: bytes, *, lifecycle_endpoint: bool) -> ProcessResult:
        if not lifecycle_endpoint:
            result = await self._pipeline.process(body, lifecycle_endpoint=False)
            if not result.dropped.get("unknown_subscription"):
                return result
        # Lifecycle events act on the runtime's subscriptions; an unknown id may be one it created
        # since its last update here. Items this process stored already are deduplicated there.
        self.forwarded += 1
        answer = await self._wire.request({"t": "forward", "lifecycle": lifecycle_endpoint,
                                           "body": body.decode("utf-8", "surrogateescape")})
        return ProcessResult(received=answer.get("received", 0), accepted=answer.get("accepted", 0),
                             stored=answer.get("stored", 0), retry=bool(answer.get("retry", True)))


async def serve(control: socket.socket, listener: socket.socket) -> None:
    """Run until the runtime closes the control line."""
    wire = await Wire.from_socket(control)
    hello = await wire.receive()
    settings = unpack_settings(hello["settings"])
    configure(settings.log_level, settings.log_format)
    policy = TrustPolicy()
    adopt_policy(policy, hello["policy"])
    known: dict[str, KnownSubscription] = known_from(hello["known"])
    inbox = Inbox(settings.state_dir / "inbox.db", own_ids=policy.own_ids)
    gate = AccessPolicy(settings)
    gate.adopt(hello["gate"])
    notes = _Notes(wire)

    def note(message: dict[str, Any]) -> None:
        tg.start_soon(wire.notify, message)

    intake = Intake(inbox, settings.state_dir / "intake.db", policy=policy, gate=gate,
                    on_overflow=lambda kind, reason: note({"t": "resync", "kind": kind, "reason": reason}))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context(settings)))

    async def on_lifecycle(sub: KnownSubscription, event: str) -> None:
        note({"t": "lifecycle", "id": sub.id, "event": event})

    async def on_mail_fetch(message_id: str, partial: dict[str, Any]) -> None:
        note({"t": "fetch", "kind": "mail", "id": message_id, "partial": partial})

    async def on_chat_fetch(chat_id: str, message_id: str) -> None:
        note({"t": "fetch", "kind": "teams", "chat": chat_id, "id": message_id})

    async def on_channel_fetch(ref: ChannelRef) -> None:
        note({"t": "fetch", "kind": "channel", "ref": [ref.team_id, ref.channel_id, ref.message_id, ref.reply_id]})

    pipeline = NotificationPipeline(
        settings=settings, inbox=inbox, keyring=import_ring(hello["keys"]),
        jwks=JwksCache(settings.jwks_url, session, ssl=ssl_context(settings)), policy=policy, subscriptions=known,
        on_lifecycle=on_lifecycle, on_mail_fetch=on_mail_fetch, on_chat_fetch=on_chat_fetch,
        on_channel_fetch=on_channel_fetch, store=_ReportingStore(intake, notes),
        fallbacks=TokenFallbacks(facts=_FactsByWire(note),  # type: ignore[arg-type]
                                 on_capped=lambda kind, reason: note({"t": "resync", "kind": kind, "reason": reason})),
        yield_to_sinks=False,
    )
    forwarding = _Forwarding(pipeline, wire)

    async def health(_: WebhookStats) -> dict[str, Any]:
        return (await wire.request({"t": "health"}))["health"]  # every process's counts, as the runtime's

    server = WebhookServer(settings, forwarding, health=health)

    async def updates() -> None:
        while True:
            message = await wire.receive()
            if message["t"] == "known":
                known.clear()
                known.update(known_from(message["rows"]))
            elif message["t"] == "policy":
                adopt_policy(policy, message["policy"])
                gate.adopt(message["gate"])

    async def stats() -> None:
        while True:
            await anyio.sleep(STATS_SECONDS)
            s = server.stats
            if not await wire.notify({"t": "stats", "public": s.public(), "failing": s.failing,
                                      "forwarded": forwarding.forwarded, "intake": dict(intake.counters),
                                      "notifications": pipeline.fallbacks.snapshot()}):
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(notes.run)
            tg.start_soon(stats)
            tg.start_soon(_serve, server, listener)
            log.info("intake_process_serving", port=listener.getsockname()[1])
            try:
                await updates()
            except WireClosed:
                pass  # the runtime stopped (or is stopping us): finish in-flight POSTs and go
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await session.close()
            intake.close()
            gate.close()
            inbox.close()


async def _serve(server: WebhookServer, listener: socket.socket) -> None:
    await server.run(sock=listener)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(args[0]))
    listener = socket.socket(fileno=int(args[1]))
    try:
        anyio.run(serve, control, listener)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
