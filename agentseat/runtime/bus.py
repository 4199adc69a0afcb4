"""Fan-out from the inbox to the sinks.

The inbox is the buffer: producers (webhook, poller) append durably and never
wait for a sink, and each sink pulls at its own pace from its own cursor. That
is the backpressure: a slow sink only falls behind in the log, it never blocks
intake or grows memory, and a restarted sink resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import structlog

from .inbox import Event, Inbox

log = structlog.get_logger(__name__)


async def follow(inbox: Inbox, sink: str, *, from_start: bool = False, batch: int = 100,
                 idle_timeout: float = 30.0) -> AsyncIterator[Event]:
    """Every event after `sink`'s cursor, in order; the cursor advances once the
    consumer has handled an event (it asks for the next one), so a crash replays
    at most the event in hand, never skips one.

    A sink seen for the first time starts at the newest event unless `from_start`.
    """
    # A marker, not "cursor is 0", says the sink was seen before: a sink that first
    # started on an empty inbox must still get what arrives while it is down.
    marker = f"sink.{sink}.started"
    if inbox.get_meta(marker) is None:
        inbox.advance(sink, 0 if from_start else inbox.latest_seq())
        inbox.set_meta(marker, "1")
    cursor = inbox.cursor(sink)
    while True:
        events = await inbox.aread(cursor, batch)
        if not events:
            await inbox.wait_for_new(cursor, timeout=idle_timeout)
            continue
        for event in events:
            yield event
            # The consumer has handled `event` (it asks for the next one). Record that even
            # when a shutdown is cancelling us, or a clean stop would replay it like a crash.
            with anyio.CancelScope(shield=True):
                cursor = await inbox.aadvance(sink, event.seq)
            await anyio.lowlevel.checkpoint_if_cancelled()


async def claimed(inbox: Inbox, group: str, claimant: str, *, batch: int = 10,
                  idle_timeout: float = 30.0) -> AsyncIterator[Event]:
    """Events of a shared group, each handed to exactly one claimant across processes."""
    await inbox.aensure_group(group, inbox.latest_seq())
    while True:
        seen = inbox.latest_seq()
        events = await inbox.aclaim_next(group, claimant, batch)
        if not events:
            await inbox.wait_for_new(seen, timeout=idle_timeout)
            continue
        for event in events:
            yield event
