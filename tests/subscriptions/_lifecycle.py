"""A live runtime on the sandbox, and an attacker who holds its genuine clientStates.

The attacker posts lifecycle notifications straight to the runtime's webhook
over loopback, as anyone who captured one genuine POST could; the sandbox's
request counters (`GET /_sandbox/stats` counts Graph requests per route) show
what each flood cost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio

from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.tenant import Subscription
from agentseat.subscriptions.manager import SubscriptionManager
from tests.conftest import settings_from_env

PATCH = "PATCH /subscriptions/{sub_id}"
GET_ONE = "GET /subscriptions/{sub_id}"
CREATE = "POST /subscriptions"
CHAT_LIST = "GET /me/chats"
MAIL_DELTA = "GET /me/mailFolders/{folder_id}/messages/delta"


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait on a condition; the timeout is only a safety bound, never a measurement."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


def live(sandbox: Sandbox, kind: str) -> Subscription:
    """The sandbox's (Graph's) record of the agent's subscription of `kind`."""
    subs = [s for s in list(sandbox.tenant.subscriptions.values())
            if ("chats" in s.resource.lower()) == (kind == "teams")]
    assert len(subs) == 1, subs
    return subs[0]


def requests(sandbox: Sandbox, route: str) -> int:
    return sandbox.stats.requests[route]


def reads(sandbox: Sandbox, route: str) -> int:
    """Requests Graph answered (a 429 is retried, and was no read)."""
    return sandbox.stats.requests[route] - sandbox.stats.throttled[route]


def mail_delta_reads(sandbox: Sandbox) -> int:
    return sum(reads(sandbox, route) for route in list(sandbox.stats.requests) if "delta" in route)


class Live:
    """A running webhook-mode runtime and the lifecycle URL an attacker can reach."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def manager(self) -> SubscriptionManager:
        assert self.runtime.manager is not None
        return self.runtime.manager

    def item(self, sandbox: Sandbox, event: str, *, kind: str = "teams", subscription: str | None = None,
             client_state: str | None = None) -> dict[str, Any]:
        """A lifecycle item with the genuine clientState of `kind` unless told otherwise."""
        sub = live(sandbox, kind)
        return {"subscriptionId": subscription or sub.id, "subscriptionExpirationDateTime": "2026-02-02T11:00:00Z",
                "tenantId": self.runtime.settings.tenant_id,
                "clientState": sub.client_state if client_state is None else client_state, "lifecycleEvent": event}

    async def post(self, items: list[dict[str, Any]], *, path: str = "/lifecycle") -> int:
        async with aiohttp.ClientSession() as s, s.post(
            self.runtime.status.public_url + path, data=json.dumps({"value": items}),
            headers={"Content-Type": "application/json"},
        ) as resp:
            return resp.status

    async def settled(self) -> None:
        """Every lifecycle event taken, and every job it asked for done."""
        await wait_for(self.manager.lifecycle.idle)


@asynccontextmanager
async def running(env: dict[str, str], **overrides: str) -> AsyncIterator[Live]:
    settings = settings_from_env({**env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_RECONCILE_SECONDS": "86400",
                                  **{f"AGENTSEAT_{k.upper()}": v for k, v in overrides.items()}})
    runtime = Runtime(settings)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "webhook")
        try:
            yield Live(runtime)
        finally:
            tg.cancel_scope.cancel()
