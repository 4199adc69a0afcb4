"""The agent's token chain as an azure-core `AsyncTokenCredential` (Event Hubs, Blob Storage).

The Azure SDKs ask a credential for `get_token("https://eventhubs.azure.net/.default")` or
`"https://storage.azure.com/.default"`; this answers from identity/tokens.py's chain, so
the agent needs no stored secret for Azure. `agent_user` (the default) is the Agent User's
delegated token (three hops, cached and refreshed by `TokenProvider`); `agent_identity`
is the Agent Identity's app-only token (two hops). Azure roles go to that principal.
It owns the translation of scopes and errors, not the chain itself.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from ..errors import TokenError
from ..identity.tokens import TokenProvider, decode_jwt

__all__ = ["EVENTHUBS_SCOPE", "STORAGE_SCOPE", "AgentCredential"]

log = structlog.get_logger(__name__)

#: "Authenticate an application with Microsoft Entra ID to access Event Hubs resources".
EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"
#: "Authorize access to blobs using Microsoft Entra ID".
STORAGE_SCOPE = "https://storage.azure.com/.default"
_DEFAULT = "/.default"


class AgentCredential:
    """`AsyncTokenCredential` over the agent's chain: one resource per call, as Entra allows."""

    def __init__(self, tokens: TokenProvider, *, principal: str = "agent_user") -> None:
        self._tokens = tokens
        self._principal = principal

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        if len(scopes) != 1 or not scopes[0].endswith(_DEFAULT):
            # Entra mints one resource's `.default` per token; the Azure SDKs never ask for more.
            raise ClientAuthenticationError(message=f"the agent's credential takes one `<resource>/.default` scope, "
                                                    f"got {len(scopes)}")
        resource = scopes[0][: -len(_DEFAULT)]
        try:
            if self._principal == "agent_identity":
                token = await self._tokens.app_token(resource)
                expires = float(decode_jwt(token)[1].get("exp") or time.time() + 300)
            else:
                cached = await self._tokens.access_token(resource)
                token, expires = cached.token, cached.expires_at
        except TokenError as exc:
            log.warning("azure_token_failed", resource=resource, hop=exc.hop, code=exc.code)
            # ClientAuthenticationError is what azure-core's retry and the SDKs treat as an auth failure.
            raise ClientAuthenticationError(message=f"{exc.message} ({exc.hint})" if exc.hint else exc.message) from exc
        return AccessToken(token, int(expires))

    async def close(self) -> None:
        """Nothing to release: the chain belongs to the runtime."""

    async def __aenter__(self) -> AgentCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
