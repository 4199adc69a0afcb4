"""`agentseat doctor` for Event Hubs: against the sandbox's emulated namespace over loopback TLS,
as the agent (Entra) and with SAS; an unreachable endpoint and a refused key are explained. The Blob
checkpoint store as the agent on Azurite (HTTPS, OAuth): passing, refused, and a missing container."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import pytest

from agentseat.cli import transport_checks
from agentseat.config import GRAPH_CHANGE_TRACKING_APP_ID
from agentseat.eventhub.doctor import az_commands, eventhub_checks
from agentseat.identity.doctor import doctor
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.eventhub.conftest import Azurite, sandbox_tls, start_azurite
from tests.runtime.test_runtime import control


@pytest.fixture
async def hub(sandbox: Sandbox) -> dict[str, Any]:
    return await control(sandbox, "GET", "/_sandbox/eventhubs")  # type: ignore[no-any-return]


def hub_env(agent_env: dict[str, str], info: dict[str, Any], **extra: str) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"],
            "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"], "AGENTSEAT_EVENTHUB_ENDPOINT": info["endpoint"],
            **{f"AGENTSEAT_{k.upper()}": v for k, v in extra.items()}}


def test_az_commands_grant_the_agent_receive_and_graph_send() -> None:
    from agentseat.config import Settings

    settings = Settings(_env_file=None, eventhub_namespace="contoso-events", eventhub_name="graph",  # type: ignore[call-arg]
                        agent_user_id="11111111-2222-3333-4444-555555555555")
    receive, send = az_commands(settings)
    assert '--role "Azure Event Hubs Data Receiver"' in receive
    assert "--assignee-object-id 11111111-2222-3333-4444-555555555555 --assignee-principal-type User" in receive
    assert "az eventhubs namespace show -g <resource-group> -n contoso-events" in receive
    assert '--role "Azure Event Hubs Data Sender"' in send and f"--assignee {GRAPH_CHANGE_TRACKING_APP_ID}" in send
    blob = Settings(_env_file=None, eventhub_namespace="n", eventhub_name="h",  # type: ignore[call-arg]
                    checkpoint_store="https://acct.blob.core.windows.net/ckpt", azure_principal="agent_identity",
                    agent_object_id="99999999-2222-3333-4444-555555555555")
    assert "Storage Blob Data Contributor" in az_commands(blob)[-1]
    assert "-n acct --query id" in az_commands(blob)[-1] and az_commands(blob)[-1].endswith("/containers/ckpt")
    assert "--assignee-principal-type ServicePrincipal" in az_commands(blob)[0]


async def test_doctor_reads_the_emulated_hub_as_the_agent(agent_env: dict[str, str], hub: dict[str, Any]) -> None:
    checks = {c.name: c for c in await eventhub_checks(settings_from_env(hub_env(agent_env, hub)))}
    assert [checks[n].status for n in ("event hub settings", "event hub token", "event hub", "checkpoint store")] \
        == ["ok", "ok", "ok", "ok"], [c.render() for c in checks.values()]
    assert f"{hub['hubs'][0]['partitionCount']} partitions" in checks["event hub"].detail
    # Graph's send right cannot be seen from the agent's side: said plainly, with the command.
    assert checks["graph send role"].status == "warn" and GRAPH_CHANGE_TRACKING_APP_ID in checks["graph send role"].fix


async def test_doctor_with_a_sas_connection_string_needs_no_token(agent_env: dict[str, str],
                                                                   hub: dict[str, Any]) -> None:
    env = hub_env(agent_env, hub, eventhub_connection_string=hub["connectionString"])
    checks = {c.name: c for c in await eventhub_checks(settings_from_env(env))}
    assert "event hub token" not in checks and checks["event hub"].status == "ok", checks["event hub"].render()


async def test_a_wrong_sas_key_is_a_refusal_with_the_role_command(agent_env: dict[str, str],
                                                                  hub: dict[str, Any]) -> None:
    wrong = hub["connectionString"].split("SharedAccessKey=")[0] + "SharedAccessKey=bm90IHRoZSBrZXk="
    checks = {c.name: c for c in await eventhub_checks(settings_from_env(hub_env(
        agent_env, hub, eventhub_connection_string=wrong)))}
    assert checks["event hub"].status == "fail"
    assert "refused" in checks["event hub"].detail and "Azure Event Hubs Data Receiver" in checks["event hub"].fix


async def test_an_unreachable_endpoint_says_which_port_to_open(agent_env: dict[str, str], hub: dict[str, Any]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket closes
    env = hub_env(agent_env, hub, eventhub_endpoint=f"sb://127.0.0.1:{closed}")
    out = io.StringIO()
    settings = settings_from_env(env)
    assert await doctor(settings, out, extra=transport_checks(settings)) == 1  # as `agentseat doctor` runs it
    text = out.getvalue()
    assert "✗ event hub:" in text and "5671" in text


async def test_without_a_working_identity_the_hub_check_waits_for_the_fix(agent_env: dict[str, str],
                                                                          hub: dict[str, Any]) -> None:
    checks = await eventhub_checks(settings_from_env(hub_env(agent_env, hub)), identity_ok=False)
    assert [(c.name, c.status) for c in checks] == [("event hub settings", "ok"), ("event hub", "skip")]


async def test_the_blob_checkpoint_store_passes_with_the_agents_token(
        agent_env: dict[str, str], hub: dict[str, Any], azurite_oauth: Azurite) -> None:
    url = await azurite_oauth.create_container("checkpoints")
    settings = settings_from_env(hub_env(agent_env, hub, checkpoint_store=url))
    checks = {c.name: c for c in await eventhub_checks(settings)}
    store = checks["checkpoint store"]
    assert store.status == "ok" and "as the agent (agent_user, Entra token)" in store.detail, store.render()
    assert await azurite_oauth.tokens_accepted(2) >= 2  # ownership and checkpoints, listed with the token


async def test_a_refused_token_is_explained_with_the_storage_role_command(
        sandbox: Sandbox, agent_env: dict[str, str], hub: dict[str, Any], tmp_path: Path) -> None:
    # Azurite on HTTPS without --oauth takes no Bearer token: it answers 403, as Storage does to a
    # valid token whose principal holds no data role on the container.
    with start_azurite(tmp_path, tls=sandbox_tls(sandbox)) as refusing:
        url = await refusing.create_container("checkpoints")
        settings = settings_from_env(hub_env(agent_env, hub, checkpoint_store=url))
        checks = {c.name: c for c in await eventhub_checks(settings)}
    store = checks["checkpoint store"]
    assert store.status == "fail" and "refused the agent (agent_user): AuthorizationFailure" in store.detail
    assert 'az role assignment create --role "Storage Blob Data Contributor"' in store.fix
    assert f"--assignee-object-id {settings.agent_user_id} --assignee-principal-type User" in store.fix


async def test_a_missing_container_says_how_to_create_it(
        agent_env: dict[str, str], hub: dict[str, Any], azurite_oauth: Azurite) -> None:
    url = f"{azurite_oauth.account_url}/nothere"
    settings = settings_from_env(hub_env(agent_env, hub, checkpoint_store=url))
    checks = {c.name: c for c in await eventhub_checks(settings)}
    store = checks["checkpoint store"]
    assert store.status == "fail" and "nothere does not exist" in store.detail
    assert "az storage container create --auth-mode login -n nothere" in store.fix
