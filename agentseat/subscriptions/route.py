"""Where a screened lifecycle notification goes: the gate of the manager that holds its subscription.

The notification pipeline hands each verified lifecycle event (a held subscription id, its
clientState) to `offer`. It goes to the lifecycle gate (lifecycle.py) of the manager that
holds the subscription, chats and mail or a channel's, which confirms it with Graph before
acting. On a machine that only follows the manager of a shared event hub, `forward` is set
(runtime/hub.py) and takes it instead: eventhub/forward.py hands it to the lease holder,
whose relay calls `act` here, so only the manager ever acts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..graph.subscription import KnownSubscription
from .known import KnownUnion, KnownView
from .lifecycle import LifecycleGate

__all__ = ["LifecycleRoute"]


class _Managed(Protocol):
    known: KnownView
    lifecycle: LifecycleGate


class LifecycleRoute:
    """The pipeline's lifecycle callback and the subscriptions it screens with, over several managers."""

    def __init__(self, *managers: _Managed) -> None:
        self._managers = managers
        #: Every manager's subscriptions as one mapping: what the pipeline screens ids and clientStates with.
        self.known = KnownUnion(*(m.known for m in managers))
        #: Set while this machine follows a hub's manager: it takes the events instead of the gates.
        self.forward: Callable[[KnownSubscription, str], None] | None = None

    async def offer(self, known: KnownSubscription, event: str) -> None:
        """Never blocks or raises: a full queue is a counted drop, and the POST still gets 202."""
        forward = self.forward
        if forward is not None:
            forward(known, event)
        else:
            self.act(known, event)

    def act(self, known: KnownSubscription, event: str) -> None:
        """Through the gate of the manager holding `known` (the first one when none holds it: it drops it, counted)."""
        manager = next((m for m in self._managers if known.id in m.known), self._managers[0])
        manager.lifecycle.offer(known, event)
