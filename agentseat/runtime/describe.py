"""What a running runtime reports of itself (`Runtime.describe`): the MCP `status` tool and tests read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock.scheduler import scheduled
from .inbox_view import unread_status

if TYPE_CHECKING:
    from .app import Runtime

__all__ = ["describe"]


def describe(runtime: Runtime) -> dict[str, Any]:
    """What `status` shows: mode, subscriptions, last event, counts, unread events."""
    last = runtime.inbox.last_event()
    unread = unread_status(runtime.inbox.unread_summary())
    if unread["unread"]:  # what the model should do about them, where it reads the count
        unread["next"] = "read_events returns them (and marks them read); mark_read marks handled ones"
    return {
        "role": runtime.status.role,
        "mode": runtime.status.mode,
        "transport": runtime.transport.describe() if runtime.transport else None,  # auto: what it chose and why
        "source": runtime.status.source,
        "public_url": runtime.status.public_url,
        "polling": runtime.status.polling,
        "subscriptions": {**(runtime.manager.status() if runtime.manager else {}),
                          **(runtime.channel_manager.status() if runtime.channel_manager else {})},
        # Event Hubs mode: the partitions this process owns, their last checkpoints, counts.
        "eventhub": runtime.hub.consumer.describe() if runtime.hub and runtime.hub.consumer else None,
        "events": {"total": runtime.inbox.count(), "teams": runtime.inbox.count("teams"), "mail": runtime.inbox.count("mail")},
        "last_event": None if last is None else {"kind": last.kind, "at": last.received_at, "seq": last.seq},
        "unread": unread,
        # Messages dropped because Graph did not confirm them (a forged claim) are counted here.
        "intake": dict(runtime.intake.counters),
        # AGENTSEAT_INTAKE_PROCESSES > 1: each intake process, its starts and what it took.
        **({"intake_processes": runtime.intake_workers.describe()} if runtime.intake_workers else {}),
        "access": runtime.access.summary(),  # the inbound policy, pending codes, held messages
        # Lifecycle events received, dropped (forged, coalesced, rate-limited) and acted on.
        "lifecycle": runtime.manager.counters.snapshot() if runtime.manager else {},
        "poller": vars(runtime.poller.counters),
        "channel_poller": {"rounds": runtime.channels.rounds, "events": runtime.channels.events,
                           "errors": runtime.channels.errors},
        "notifications": runtime.token_fallbacks.snapshot(),  # validation tokens: verified, fallbacks, capped
        # Messages reconciles found that no notification delivered (a silent webhook failure).
        "missed_notifications": runtime.delivery.missed_notifications,
        "delivery": runtime.delivery.snapshot(),
        "token_refreshes": runtime.tokens.refreshes,
        "notes": runtime.status.notes,
        # What the tenant was seen to do (token audience, lifetimes, $orderby, ...) and warnings.
        "tenant": runtime.facts.snapshot(),
        # What the clock will raise next (issue 15); wakeups: times the owner's clock woke.
        "scheduled": scheduled(runtime.promises, extra=runtime.clock.timer_times()) | (
            {"clock_wakeups": runtime.clock.wakeups} if runtime.status.role == "owner" else {}),
    }

