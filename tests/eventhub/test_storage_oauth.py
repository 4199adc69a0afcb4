"""Blob checkpoints as the agent: the sandbox's Storage tokens on Azurite with `--oauth basic` over HTTPS.

Azurite's `basic` level checks the token's times, its issuer (the STS prefix) and its audience
(storage.azure.com, or the account in the URL), not its signature (see conftest.py). So each
refusal below changes one claim of an otherwise good token and names Azurite's reason for it; the
agent's own tokens come from the sandbox's Entra through the real msal chain.
"""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest
import requests

from agentseat.config import Settings
from agentseat.eventhub.client import checkpoint_store
from agentseat.eventhub.credential import EVENTHUBS_SCOPE, STORAGE_SCOPE, AgentCredential
from agentseat.eventhub.lease import Lease
from agentseat.identity.keys import KeyStore
from agentseat.identity.tokens import TokenProvider
from agentseat.sandbox.app import Sandbox
from agentseat.sandbox.entra import tokens
from tests.conftest import settings_from_env
from tests.eventhub.conftest import Azurite

NS, HUB, GROUP = "ns.servicebus.windows.net", "graph", "$Default"


def credential(settings: Settings, principal: str = "agent_user") -> AgentCredential:
    store = KeyStore(settings)
    provider = TokenProvider(settings, lambda: store.load_pem_credential(settings.cert_thumbprint or None))
    return AgentCredential(provider, principal=principal)


async def list_blobs(azurite: Azurite, container: str, token: str) -> tuple[int, str]:
    """List Blobs with a Bearer token (x-ms-version 2017-11-09 or later: "Authorize with Microsoft Entra ID")."""
    def call() -> requests.Response:
        return requests.get(f"{azurite.account_url}/{container}", params={"restype": "container", "comp": "list"},
                            headers={"Authorization": f"Bearer {token}", "x-ms-version": "2021-08-06"},
                            verify=azurite.ca, timeout=10)
    response = await anyio.to_thread.run_sync(call)
    detail = re.search(r"<AuthenticationErrorDetail>(.*?)</AuthenticationErrorDetail>", response.text)
    return response.status_code, detail.group(1) if detail else ""


async def test_the_agents_token_is_accepted_and_other_audiences_refused(
        sandbox: Sandbox, agent_env: dict[str, str], azurite_oauth: Azurite) -> None:
    await azurite_oauth.create_container("ckpt")
    settings = settings_from_env(agent_env)
    agent = credential(settings)
    storage = (await agent.get_token(STORAGE_SCOPE)).token
    account = (await agent.get_token("https://devstoreaccount1.blob.core.windows.net/.default")).token
    other_account = (await agent.get_token("https://otheraccount.blob.core.windows.net/.default")).token
    event_hubs = (await agent.get_token(EVENTHUBS_SCOPE)).token
    app_only = (await credential(settings, "agent_identity").get_token(STORAGE_SCOPE)).token
    assert await list_blobs(azurite_oauth, "ckpt", storage) == (200, "")
    assert await list_blobs(azurite_oauth, "ckpt", account) == (200, "")  # the account in the URL
    assert await list_blobs(azurite_oauth, "ckpt", app_only) == (200, "")
    assert await list_blobs(azurite_oauth, "ckpt", other_account) == (403, "Invalid token audience.")
    status, _ = await list_blobs(azurite_oauth, "ckpt", event_hubs)
    assert status == 403  # the agent's Event Hubs token is no Storage token

    def mint(**changes: object) -> str:
        """A Storage token of the agent's, minted by the sandbox's Entra with one thing changed."""
        base = {"aud": "https://storage.azure.com", "app_id": settings.agent_id, "oid": settings.agent_user_id,
                "user_id": settings.agent_user_id, "scp": "user_impersonation"}
        return tokens.v1_access_token(sandbox, **(base | changes))[0]  # type: ignore[arg-type]

    foreign = sandbox.portal.call(lambda: mint(aud="https://eventhubs.azure.net"))  # type: ignore[attr-defined]
    expired = sandbox.portal.call(lambda: mint(lifetime=-60))  # type: ignore[attr-defined]
    v2 = sandbox.portal.call(lambda: tokens.delegated_token(  # type: ignore[attr-defined]
        sandbox, user_id=settings.agent_user_id, app_id=settings.agent_id, scopes=["user_impersonation"],
        aud="https://storage.azure.com")[0])  # right audience, but the v2.0 issuer Storage tokens never carry
    assert await list_blobs(azurite_oauth, "ckpt", foreign) == (403, "Invalid token audience.")
    assert await list_blobs(azurite_oauth, "ckpt", v2) == (403, "Invalid token issuer.")
    assert await list_blobs(azurite_oauth, "ckpt", expired) == (
        403, "Lifetime validation failed. The token is expired.")
    assert await list_blobs(azurite_oauth, "ckpt", sandbox.portal.call(mint)) == (200, "")  # type: ignore[attr-defined]
    # The four accepted went through Azurite's Bearer authenticator (its debug log, written behind the answers).
    assert await azurite_oauth.tokens_accepted(4) == 4


@pytest.mark.parametrize("principal", ["agent_user", "agent_identity"])
async def test_the_blob_checkpoint_store_with_a_plain_container_url_works_as_the_agent(
        sandbox: Sandbox, agent_env: dict[str, str], azurite_oauth: Azurite, principal: str) -> None:
    url = await azurite_oauth.create_container("checkpoints")  # no SAS: the agent's token authorizes
    settings = settings_from_env({**agent_env, "AGENTSEAT_CHECKPOINT_STORE": url,
                                  "AGENTSEAT_AZURE_PRINCIPAL": principal})
    assert settings.ca_bundle is not None and str(settings.ca_bundle) == azurite_oauth.ca  # the sandbox CA verifies it
    store = checkpoint_store(settings, Path(settings.state_dir) / "inbox.db", credential(settings, principal))
    try:
        claimed = list(await store.claim_ownership([{"fully_qualified_namespace": NS, "eventhub_name": HUB,
                                                     "consumer_group": GROUP, "partition_id": "0", "owner_id": "m1"}]))
        assert [c["owner_id"] for c in claimed] == ["m1"]
        await store.update_checkpoint({"fully_qualified_namespace": NS, "eventhub_name": HUB, "consumer_group": GROUP,
                                       "partition_id": "0", "offset": "42", "sequence_number": 7})
        lease = Lease(store, NS, HUB, GROUP, expiry_seconds=30, owner_id="m1")
        assert await lease.try_acquire()
    finally:
        await store.close()
    async with azurite_oauth.key_store("checkpoints") as admin:  # read back with the account key
        (checkpoint,) = await admin.list_checkpoints(NS, HUB, GROUP)
        owners = {o["partition_id"]: o["owner_id"] for o in await admin.list_ownership(NS, HUB, GROUP)}
    assert (checkpoint["partition_id"], checkpoint["sequence_number"]) == ("0", 7) and owners == {"0": "m1"}
    assert await azurite_oauth.tokens_accepted(4) >= 4  # a claim, a checkpoint, the lease's list and claim, at least
    label = "user_fic_storage" if principal == "agent_user" else "storage"
    assert sandbox.stats.tokens[label] == 1  # one token served every call (the provider's cache, or the SDK's)
