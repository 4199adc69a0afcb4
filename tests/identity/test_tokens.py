"""The agent's token chain (identity/tokens.py) against the sandbox's Entra over real HTTPS.

Counts come from the sandbox's own `/_sandbox/stats` (token requests per grant: `fmi_path` is
hop 1, `agent_identity` hop 2, `user_fic` hop 3); failures must name their hop and leave no
token, key or passphrase in the logs.
"""

from __future__ import annotations

import io
import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import requests.certs

from agentseat.config import Settings
from agentseat.errors import TokenError
from agentseat.graph.client import GraphClient
from agentseat.identity.keys import KeyStore
from agentseat.identity.provision_graph import ProvisionerTokens
from agentseat.identity.tokens import HOP1, HOP3, AppOnlyTokens, TokenChain, TokenProvider, decode_jwt
from agentseat.logging import configure
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.tenant import AGENT_SCOPES, App

PASSPHRASE = "test-passphrase-not-secret"  # what tests/conftest.py's provision_agent stores the key with
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+")
_PEM = re.compile(r"BEGIN [A-Z ]*PRIVATE KEY")
THREE_HOPS = {"fmi_path": 1, "agent_identity": 1, "user_fic": 1}


def control(sb: Sandbox, method: str, path: str, body: Any = None) -> Any:
    """The sandbox's control API over HTTPS (blocking; the sandbox runs on its own thread)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sb.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=sb.client_ssl_context()) as resp:  # noqa: S310 - loopback https
        return json.loads(resp.read() or b"null")


def provider_for(settings: Settings) -> TokenProvider:
    store = KeyStore(settings)
    return TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))


def assert_no_secrets(text: str) -> None:
    assert text.strip(), "nothing was logged: the scan would prove nothing"
    assert not _JWT.search(text), "a JWT (token or assertion) reached the logs"
    assert not _PEM.search(text), "private key material reached the logs"
    assert PASSPHRASE not in text, "the key passphrase reached the logs"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line (ours, msal's, the sandbox's) into a buffer, at debug level."""
    buffer = io.StringIO()
    configure("debug", "console", stream=buffer)
    yield buffer
    configure("debug")


async def test_three_hops_mint_a_delegated_graph_token_then_the_cache_serves_it(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    provider = provider_for(agent_settings)
    control(sandbox, "DELETE", "/_sandbox/stats")
    token = await provider.get()
    _, claims = decode_jwt(token)
    assert claims["idtyp"] == "user" and claims["oid"] == sandbox.role("agent_user")
    assert set(AGENT_SCOPES) <= set(claims["scp"].split())
    assert control(sandbox, "GET", "/_sandbox/stats")["tokens"] == THREE_HOPS
    assert await provider.get() == token
    assert control(sandbox, "GET", "/_sandbox/stats")["tokens"] == THREE_HOPS, "a cached token cost a request"
    assert provider.refreshes == 1


async def test_the_ca_bundle_setting_wins_over_requests_ca_bundle(
        sandbox: Sandbox, agent_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE replace Session.verify; msal would then distrust the sandbox CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", requests.certs.where())
    assert decode_jwt(await provider_for(agent_settings).get())[1]["idtyp"] == "user"


async def test_hundred_concurrent_calls_after_expiry_cause_exactly_one_three_hop_refresh(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    provider = provider_for(agent_settings)
    results: list[Any] = []
    async with GraphClient(agent_settings, provider) as graph:
        await graph.get("/me")
        control(sandbox, "DELETE", "/_sandbox/stats")
        control(sandbox, "POST", "/_sandbox/tokens/expire")

        async def call() -> None:
            results.append(await graph.get("/me", **{"$select": "id"}))

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(call)
    stats = control(sandbox, "GET", "/_sandbox/stats")
    assert [r["id"] for r in results] == [sandbox.role("agent_user")] * 100
    assert stats["tokens"] == THREE_HOPS, stats["tokens"]
    # Every call was sent once with the expired token (401) and at most once more.
    assert 100 < stats["requests"]["GET /me"] <= 200
    assert provider.refreshes == 2


async def test_a_token_expired_mid_run_costs_one_refresh_and_one_retry(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        await graph.get("/me")
        control(sandbox, "DELETE", "/_sandbox/stats")
        control(sandbox, "POST", "/_sandbox/tokens/expire")
        me = await graph.get("/me")
    stats = control(sandbox, "GET", "/_sandbox/stats")
    assert me["id"] == sandbox.role("agent_user")
    assert stats["requests"] == {"GET /me": 2} and stats["tokens"] == THREE_HOPS
    assert "token_invalidated" in logs.getvalue()
    assert_no_secrets(logs.getvalue())


async def test_a_revoked_certificate_fails_hop_1_with_a_clear_error(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    # Revoke the way an admin would: the provisioner replaces the Blueprint's keyCredentials.
    blueprint = sandbox.tenant.apps[sandbox.role("blueprint")]
    async with GraphClient(agent_settings, ProvisionerTokens(agent_settings)) as admin:
        await admin.patch(f"/applications/{blueprint.object_id}", {"keyCredentials": []})
    assert blueprint.key_credentials == []
    with pytest.raises(TokenError) as caught:
        async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
            await graph.get("/me")
    error = caught.value
    assert error.hop == HOP1 and error.code == "AADSTS700027"
    assert "hop1:blueprint failed" in str(error) and "not registered on the Blueprint" in str(error)
    assert_no_secrets(logs.getvalue())


async def test_a_wrong_fmi_path_fails_hop_1_and_names_the_setting(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    # Another Blueprint's Agent Identity: ours may not impersonate it.
    other = App(app_id=str(uuid.uuid4()), object_id=str(uuid.uuid4()), sp_object_id=str(uuid.uuid4()),
                display_name="someone else's agent", kind="agentIdentity", blueprint_app_id=str(uuid.uuid4()))
    sandbox.portal.call(sandbox.tenant.apps.__setitem__, other.app_id, other)  # type: ignore[attr-defined]
    settings = agent_settings.model_copy(update={"agent_id": other.app_id})
    with pytest.raises(TokenError) as caught:
        await provider_for(settings).get()
    assert caught.value.hop == HOP1 and caught.value.code == "AADSTS700211"
    assert "AGENTSEAT_AGENT_ID" in str(caught.value)
    assert_no_secrets(logs.getvalue())


async def test_missing_consent_fails_hop_3_once_for_all_waiting_callers(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    sandbox.portal.call(sandbox.tenant.grants.clear)  # type: ignore[attr-defined]
    provider = provider_for(agent_settings)
    control(sandbox, "DELETE", "/_sandbox/stats")
    errors: list[TokenError] = []

    async def call() -> None:
        try:
            await provider.get()
        except TokenError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(call)
    assert len(errors) == 20 and {(e.hop, e.code) for e in errors} == {(HOP3, "AADSTS65001")}
    assert "agentseat setup --grant" in str(errors[0])
    # Single flight holds for failures too: the callers queued behind one refresh share its error.
    assert control(sandbox, "GET", "/_sandbox/stats")["token_errors"] == {"AADSTS65001": 1}
    assert_no_secrets(logs.getvalue())


async def test_each_hop_can_be_called_alone(sandbox: Sandbox, agent_settings: Settings) -> None:
    store = KeyStore(agent_settings)
    chain = TokenChain(agent_settings, lambda: store.load_pem_credential())
    t1 = await anyio.to_thread.run_sync(chain.hop1)
    assert decode_jwt(t1)[1]["aud"] == "api://AzureADTokenExchange"
    t2 = await anyio.to_thread.run_sync(chain.hop2)
    assert decode_jwt(t2["access_token"])[1]["sub"] == agent_settings.agent_id
    t3 = await anyio.to_thread.run_sync(chain.hop3, agent_settings.graph_resource)
    assert decode_jwt(t3["access_token"])[1]["idtyp"] == "user"


async def test_app_only_tokens_read_the_agent_identitys_sponsors(sandbox: Sandbox, agent_settings: Settings) -> None:
    identity = sandbox.tenant.apps[sandbox.role("agent_identity")]
    sandbox.portal.call(identity.roles.append, "Application.Read.All")  # type: ignore[attr-defined]
    provider = provider_for(agent_settings)
    async with GraphClient(agent_settings, AppOnlyTokens(provider)) as graph:
        body = await graph.get(f"/servicePrincipals/{identity.sp_object_id}/microsoft.graph.agentIdentity/sponsors")
    assert [s["id"] for s in body["value"]] == [sandbox.role("sponsor")]
    exchange = decode_jwt(await provider.exchange_token())[1]
    assert exchange["aud"] == "api://AzureADTokenExchange" and exchange["sub"] == identity.app_id


async def test_a_delegated_and_an_app_only_token_asked_at_once_share_hop_one(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    # Startup asks for both together (runtime/sponsors.py beside the first Graph read): one
    # hop 1 serves both threads; hop 2 is minted for each (the exchange and the app-only scope).
    provider = provider_for(agent_settings)
    control(sandbox, "DELETE", "/_sandbox/stats")
    async with anyio.create_task_group() as tg:
        tg.start_soon(provider.get)
        tg.start_soon(AppOnlyTokens(provider).get)
    assert control(sandbox, "GET", "/_sandbox/stats")["tokens"] == {"fmi_path": 1, "agent_identity": 1,
                                                               "agent_identity_app": 1, "user_fic": 1}


async def test_the_authoritys_discovery_document_is_fetched_once_for_both_apps(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:
    # Hop 1 (the Blueprint's app) and hops 2-3 (the Agent Identity's) each build an msal app; the
    # second reuses the first's openid-configuration instead of asking the authority again.
    await provider_for(agent_settings).get()
    assert logs.getvalue().count("/v2.0/.well-known/openid-configuration") == 1
