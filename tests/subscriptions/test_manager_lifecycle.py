"""Lifecycle events that reach the subscription manager before it knows its public URL.

Found by the soak (bench/soak.py): after a restart, Graph's retried
`subscriptionRemoved` arrived before the first `sync`, and the manager asked
Graph for a subscription at "/notifications". Graph refused it (400), and the
Teams subscription stayed missing until the next sync.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from agentseat.runtime.app import Runtime
from agentseat.graph.subscription import KnownSubscription
from agentseat.sandbox.app import Sandbox
from agentseat.subscriptions.manager import SubscriptionManager

from ._lifecycle import wait_for


def _manager(runtime: Runtime, resyncs: list[tuple[str, str]]) -> SubscriptionManager:
    settings = runtime.settings
    active = runtime.keys.load(settings.cert_thumbprint)

    async def on_resync(kind: str, reason: str) -> None:
        resyncs.append((kind, reason))

    return SubscriptionManager(settings, runtime.graph, runtime.inbox, certificate_b64=active.der_b64,
                               certificate_id=active.sha1_thumbprint, on_resync=on_resync)


async def test_subscription_removed_before_the_first_sync_waits_for_the_url(sandbox: Sandbox,
                                                                             agent_settings: Any) -> None:
    runtime = Runtime(agent_settings)
    try:
        # What a previous process left: an active Teams subscription (Graph has since removed it).
        runtime.inbox.set_meta("subscriptions", json.dumps({"teams": {
            "kind": "teams", "id": "5f1c2d3e-0000-4000-8000-000000000001", "expires": 0.0,
            "url": "http://127.0.0.1:1/notifications", "state": "active", "error": "",
            "client_state": "a-secret-of-its-own"}}))
        resyncs: list[tuple[str, str]] = []
        manager = _manager(runtime, resyncs)
        known = manager.known["5f1c2d3e-0000-4000-8000-000000000001"]
        assert isinstance(known, KnownSubscription)

        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.lifecycle.run)
            manager.lifecycle.offer(known, "subscriptionRemoved")
            await wait_for(manager.lifecycle.idle)
            tg.cancel_scope.cancel()

        assert sandbox.stats.requests["GET /subscriptions/{sub_id}"] == 1  # Graph confirmed it is gone
        assert sandbox.stats.requests["POST /subscriptions"] == 0  # nothing asked of Graph without a URL
        teams = manager.states["teams"]
        assert (teams.id, teams.state, teams.error) == ("", "pending", "")
        assert "teams" not in manager.active_kinds()  # so the first sync creates it
        assert known.id not in manager.known
    finally:
        await runtime.aclose()
