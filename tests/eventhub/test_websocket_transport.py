"""AGENTSEAT_EVENTHUB_TRANSPORT=websocket: the runtime reads the hub with AMQP over WebSockets.

The sandbox serves AMQP over TLS on one loopback port (`endpoint`) and AMQP over WebSockets on
its HTTPS port (`websocketEndpoint`). With the HTTPS port as AGENTSEAT_EVENTHUB_ENDPOINT only the
WebSocket transport reaches the hub, so a client that ignored the setting would read nothing.
"""

from __future__ import annotations

import io
import socket
from typing import Any

import anyio
import pytest

from agentseat.cli import transport_checks
from agentseat.eventhub.doctor import eventhub_checks
from agentseat.identity.doctor import doctor
from agentseat.runtime.app import Runtime
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, control, upn, wait_for


@pytest.fixture
async def hub(sandbox: Sandbox) -> dict[str, Any]:
    return await control(sandbox, "GET", "/_sandbox/eventhubs")  # type: ignore[no-any-return]


def hub_env(agent_env: dict[str, str], info: dict[str, Any], *, endpoint: str, transport: str) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "eventhub", "AGENTSEAT_TUNNEL": "none",
            "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"], "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"],
            "AGENTSEAT_EVENTHUB_ENDPOINT": endpoint, "AGENTSEAT_EVENTHUB_TRANSPORT": transport}


def transports_seen(info: dict[str, Any]) -> set[str]:
    """How the namespace's clients connected: `amqps` (TLS listener) or `websocket` (HTTPS port)."""
    return {c["transport"] for c in info["traffic"]["connections"]}


async def test_the_runtime_reads_the_hub_over_websockets_on_the_https_port(
        sandbox: Sandbox, agent_env: dict[str, str], hub: dict[str, Any]) -> None:
    assert hub["websocketEndpoint"] != hub["endpoint"]  # the TLS listener is elsewhere: only WebSockets work here
    env = hub_env(agent_env, hub, endpoint=hub["websocketEndpoint"], transport="websocket")
    async with anyio.create_task_group() as tg:
        runtime = Runtime(settings_from_env(env))
        running = Running(runtime)
        await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "eventhub")
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "over port 443"})
        await wait_for(lambda: len(running.events) >= 1, timeout=60)  # a bound, not a measurement
        assert [(e.source, e.text) for e in running.events] == [("eventhub", "over port 443")]
        tg.cancel_scope.cancel()
    # Every connection the runtime opened (consumer, load balancing, management) was a WebSocket.
    assert transports_seen(await control(sandbox, "GET", "/_sandbox/eventhubs")) == {"websocket"}


async def test_doctor_reaches_the_hub_over_websockets_and_says_so(agent_env: dict[str, str],
                                                                   hub: dict[str, Any]) -> None:
    settings = settings_from_env(hub_env(agent_env, hub, endpoint=hub["websocketEndpoint"], transport="websocket"))
    checks = {c.name: c for c in await eventhub_checks(settings)}
    assert checks["event hub"].status == "ok", checks["event hub"].render()
    assert "over WebSockets" in checks["event hub settings"].detail


async def test_amqp_over_tls_to_the_websocket_port_reads_nothing(agent_env: dict[str, str],
                                                                 hub: dict[str, Any]) -> None:
    # The control for the tests above: the same endpoint with the default transport does not reach the hub.
    settings = settings_from_env(hub_env(agent_env, hub, endpoint=hub["websocketEndpoint"], transport="amqp"))
    checks = {c.name: c for c in await eventhub_checks(settings)}
    assert checks["event hub"].status == "fail", checks["event hub"].render()


@pytest.mark.parametrize(("transport", "says", "never"), [
    ("amqp", ["5671", "AGENTSEAT_EVENTHUB_TRANSPORT=websocket", "443"], []),
    ("websocket", ["443"], ["5671", "refused"]),
])
async def test_an_unreachable_endpoint_names_the_port_of_the_transport_in_use(
        agent_env: dict[str, str], hub: dict[str, Any], transport: str, says: list[str], never: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket closes
    settings = settings_from_env(hub_env(agent_env, hub, endpoint=f"sb://127.0.0.1:{closed}", transport=transport))
    out = io.StringIO()
    assert await doctor(settings, out, extra=transport_checks(settings)) == 1  # as `agentseat doctor` runs it
    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("✗ event hub:"))
    said = lines[at] + "\n" + lines[at + 1]  # the fix is printed under the failing check
    assert lines[at + 1].strip().startswith("fix:") and all(word in said for word in says), said
    assert not any(word in said for word in never), said


async def test_a_wrong_sas_key_over_websockets_is_still_a_refusal(agent_env: dict[str, str],
                                                                   hub: dict[str, Any]) -> None:
    # Over WebSockets the SDK calls a refused TCP connect an AuthenticationError too; a 401 from CBS must
    # still read as the namespace refusing, with the role to grant.
    wrong = hub["connectionString"].split("SharedAccessKey=")[0] + "SharedAccessKey=bm90IHRoZSBrZXk="
    env = {**hub_env(agent_env, hub, endpoint=hub["websocketEndpoint"], transport="websocket"),
           "AGENTSEAT_EVENTHUB_CONNECTION_STRING": wrong}
    checks = {c.name: c for c in await eventhub_checks(settings_from_env(env))}
    assert checks["event hub"].status == "fail" and "refused" in checks["event hub"].detail
    assert "Azure Event Hubs Data Receiver" in checks["event hub"].fix
