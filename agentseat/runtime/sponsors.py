"""Who the agent's sponsors are, by Graph id: the names in settings and the Agent Identity's sponsors.

Each name is one GET /users/{upn} and the identity's sponsors one GET (app-only token) of
/servicePrincipals/{id}/microsoft.graph.agentIdentity/sponsors. None depends on another, so
they run side by side: startup waits for the slowest instead of their sum before its event
sources start. Both are directory reads, throttled per app per tenant with room for far more
than these few (throttling-limits, "Identity and access service limits").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import structlog

from ..errors import AgentSeatError
from ..graph.client import GraphClient
from ..identity.tokens import AppOnlyTokens

if TYPE_CHECKING:
    from ..config import Settings
    from ..identity.tokens import TokenProvider
    from .normalize import TrustPolicy

log = structlog.get_logger(__name__)


async def resolve_sponsors(settings: Settings, graph: GraphClient, tokens: TokenProvider, policy: TrustPolicy) -> None:
    """Add every sponsor's Graph id to `policy.sponsor_ids`; a lookup that fails is logged and skipped."""

    async def by_name(name: str) -> None:
        try:
            user = await graph.get(f"/users/{name}", **{"$select": "id,userPrincipalName"})
            policy.sponsor_ids.add(str(user["id"]).lower())
        except AgentSeatError as exc:
            log.warning("sponsor_lookup_failed", sponsor=name, error=exc.message)

    async def of_identity() -> None:
        try:
            async with GraphClient(settings, AppOnlyTokens(tokens)) as app_graph:
                body = await app_graph.get(f"/servicePrincipals/{settings.agent_object_id}"
                                           "/microsoft.graph.agentIdentity/sponsors")
            for item in body.get("value", []):
                policy.sponsor_ids.add(str(item["id"]).lower())
        except AgentSeatError as exc:
            log.info("graph_sponsors_unavailable", error=exc.message)

    async with anyio.create_task_group() as tg:
        for name in list(policy.sponsor_names):
            tg.start_soon(by_name, name)
        if settings.agent_object_id:
            tg.start_soon(of_identity)
