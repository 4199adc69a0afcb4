"""The agent's chain as azure-core's AsyncTokenCredential, against the sandbox's Entra over loopback HTTPS:
tokens for Event Hubs and Storage from the Agent User (three hops) or the Agent Identity (two), errors as
ClientAuthenticationError with Entra's code, and no secret stored anywhere."""

from __future__ import annotations

import time

import pytest
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from agentseat.config import Settings
from agentseat.eventhub.credential import EVENTHUBS_SCOPE, STORAGE_SCOPE, AgentCredential
from agentseat.identity.keys import KeyStore
from agentseat.identity.tokens import TokenProvider, decode_jwt


def provider_for(settings: Settings) -> TokenProvider:
    store = KeyStore(settings)
    return TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))


async def test_agent_user_token_for_event_hubs(agent_settings: Settings) -> None:
    tokens = provider_for(agent_settings)
    credential = AgentCredential(tokens)
    assert isinstance(credential, AsyncTokenCredential)  # what the Azure SDKs check
    async with credential:
        first = await credential.get_token(EVENTHUBS_SCOPE)
        again = await credential.get_token(EVENTHUBS_SCOPE)
    claims = decode_jwt(first.token)[1]
    assert claims["aud"].rstrip("/") == "https://eventhubs.azure.net"
    assert claims["oid"] == agent_settings.agent_user_id and claims.get("idtyp") == "user"
    assert first.expires_on > time.time() + 60
    assert again.token == first.token and tokens.refreshes == 1  # the provider's cache, one walk of the chain


async def test_agent_identity_token_for_event_hubs_is_app_only(agent_settings: Settings) -> None:
    credential = AgentCredential(provider_for(agent_settings), principal="agent_identity")
    token = await credential.get_token(EVENTHUBS_SCOPE)
    claims = decode_jwt(token.token)[1]
    assert claims["aud"].rstrip("/") == "https://eventhubs.azure.net"
    assert claims.get("idtyp") != "user" and claims["appid" if "appid" in claims else "azp"] == agent_settings.agent_id
    assert token.expires_on == claims["exp"]


async def test_agent_user_token_for_storage(agent_settings: Settings) -> None:
    # What the Blob checkpoint store asks for: a v1.0 Storage token, delegated to the Agent User.
    token = await AgentCredential(provider_for(agent_settings)).get_token(STORAGE_SCOPE)
    claims = decode_jwt(token.token)[1]
    assert (claims["aud"], claims["ver"], claims["scp"]) == ("https://storage.azure.com", "1.0", "user_impersonation")
    assert claims["iss"] == f"https://sts.windows.net/{agent_settings.tenant_id}/"
    assert claims["oid"] == agent_settings.agent_user_id and claims["appid"] == agent_settings.agent_id


async def test_a_refused_resource_is_a_client_authentication_error_naming_entra_code(agent_settings: Settings) -> None:
    # The sandbox's Entra knows no Key Vault: Entra's own refusal reaches the SDK.
    credential = AgentCredential(provider_for(agent_settings))
    with pytest.raises(ClientAuthenticationError) as caught:
        await credential.get_token("https://vault.azure.net/.default")
    assert "AADSTS500011" in str(caught.value.message)


async def test_more_than_one_scope_is_refused_before_any_request(agent_settings: Settings) -> None:
    tokens = provider_for(agent_settings)
    with pytest.raises(ClientAuthenticationError, match="one `<resource>/.default` scope"):
        await AgentCredential(tokens).get_token(EVENTHUBS_SCOPE, STORAGE_SCOPE)
    assert tokens.refreshes == 0
