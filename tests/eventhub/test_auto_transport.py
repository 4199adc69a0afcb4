"""`auto` with an event hub configured, against the sandbox: it prefers the hub when the hub answers,
falls back to webhooks (saying why and what to do) when it does not, and switches to the hub once
it answers. Everything runs over real loopback sockets: the SDK's AMQP/TLS to the sandbox's hub,
and, for the hub that "comes up", a plain TCP forwarder that starts listening on the closed port."""

from __future__ import annotations

import io
import socket
from contextlib import suppress
from typing import Any

import anyio
import anyio.abc
import pytest
from structlog.testing import capture_logs

from agentseat.cli import transport_checks
from agentseat.eventhub.settings import notification_url
from agentseat.identity.doctor import doctor
from agentseat.runtime.app import Runtime
from agentseat.runtime.status import status
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, control, upn, wait_for


@pytest.fixture
async def hub(sandbox: Sandbox) -> dict[str, Any]:
    return await control(sandbox, "GET", "/_sandbox/eventhubs")  # type: ignore[no-any-return]


def auto_env(agent_env: dict[str, str], info: dict[str, Any], endpoint: str) -> dict[str, str]:
    # The agent's loopback tunnel is the webhook fallback; the hub is named as a user would name it.
    return {**agent_env, "AGENTSEAT_MODE": "auto", "AGENTSEAT_EVENTHUB_NAMESPACE": info["namespace"],
            "AGENTSEAT_EVENTHUB_NAME": info["hubs"][0]["name"], "AGENTSEAT_EVENTHUB_ENDPOINT": endpoint,
            "AGENTSEAT_EVENTHUB_PROBE_SECONDS": "1"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket closes


async def start(tg: anyio.abc.TaskGroup, env: dict[str, str]) -> Running:
    runtime = Runtime(settings_from_env(env))
    running = Running(runtime)
    await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
    return running


async def dm(sandbox: Sandbox, text: str) -> None:
    await control(sandbox, "POST", "/_sandbox/messages",
                  {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": text})


async def forward(port: int, target: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target: the hub's endpoint coming up on `port`."""

    async def pump(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        with suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            async for chunk in source:
                await sink.send(chunk)
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await sink.send_eof()

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", target) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, client, upstream)
                tg.start_soon(pump, upstream, client)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    task_status.started()
    await listener.serve(handle)


def read_to_the_end(info: dict[str, Any], runtime: Runtime) -> bool:
    """Every partition of the hub checkpointed by the runtime's consumer at its last event."""
    assert runtime.hub is not None and runtime.hub.consumer is not None
    seen = runtime.hub.consumer.status.partitions
    return all(p["id"] in seen and seen[p["id"]].sequence_number == p["lastSequenceNumber"]
               for p in info["hubs"][0]["partitions"] if p["lastSequenceNumber"] >= 0)


async def test_auto_reads_a_configured_hub_that_answers(sandbox: Sandbox, agent_env: dict[str, str],
                                                        hub: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    env = auto_env(agent_env, hub, hub["endpoint"])
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        runtime = running.runtime
        await wait_for(lambda: runtime.status.source == "eventhub", timeout=60)
        assert runtime.webhook is None and runtime.hub is not None  # exactly `--mode eventhub`: no tunnel
        chosen = runtime.describe()["transport"]
        assert chosen["transport"] == "eventhub" and "answered" in chosen["reason"] and chosen["probes"] == 1
        for sub in sandbox.tenant.subscriptions.values():
            assert sub.notification_url == sub.lifecycle_url == notification_url(runtime.settings)
        await dm(sandbox, "auto chose the hub")
        await wait_for(lambda: len(running.events) >= 1, timeout=60)
        assert [(e.source, e.text) for e in running.events] == [("eventhub", "auto chose the hub")]
        status(runtime.settings)
        tg.cancel_scope.cancel()
    assert "transport:      auto chose eventhub: the event hub answered" in capsys.readouterr().out


async def test_auto_falls_back_to_webhooks_then_switches_to_the_hub_once_it_answers(
        sandbox: Sandbox, agent_env: dict[str, str], hub: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from tests.channels._sandbox import AGENT, GRACE, make_team, post

    port = closed_port()
    env = {**auto_env(agent_env, hub, f"sb://127.0.0.1:{port}"), "AGENTSEAT_GROUP_POLICY": "all"}
    target = int(hub["endpoint"].rsplit(":", 1)[1])
    team = await make_team(sandbox, "Switching team", GRACE, upn(sandbox, "agent_user"))
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            running = await start(tg, env)
            runtime = running.runtime
            await wait_for(lambda: runtime.status.source == "webhook", timeout=60)
            chosen = runtime.describe()["transport"]
            assert chosen["transport"] == "webhook" and "does not answer" in chosen["reason"]
            assert chosen["fix"] and chosen["next_probe"]
            assert any("auto chose webhook (fallback)" in note for note in runtime.status.notes)
            await dm(sandbox, "while the hub is down")
            await wait_for(lambda: len(running.events) >= 1, timeout=60)
            assert running.events[0].source == "webhook"
            status(runtime.settings)
            assert "auto chose webhook (fallback): the event hub does not answer" in capsys.readouterr().out
            probes = runtime.describe()["transport"]["probes"]
            await wait_for(lambda: runtime.describe()["transport"]["probes"] > probes, timeout=60)
            assert runtime.status.source == "webhook"  # still down: probed again on the clock, still falling back

            await tg.start(forward, port, target)  # the hub's endpoint comes up
            await wait_for(lambda: runtime.status.source == "eventhub", timeout=60)
            assert runtime.describe()["transport"]["transport"] == "eventhub"
            # The webhook subscriptions (chats, mail, the channel) moved to the hub: every live one names it now.
            await wait_for(lambda: len(sandbox.tenant.subscriptions) == 3 and all(
                s.notification_url == notification_url(runtime.settings)
                for s in sandbox.tenant.subscriptions.values()), timeout=60)
            asked = await post(sandbox, GRACE, team, f"@{AGENT} after the switch?", mentions=[AGENT])
            await wait_for(lambda: any(e.message_id == asked for e in running.events), timeout=60)
            assert next(e for e in running.events if e.message_id == asked).source == "eventhub"
            await dm(sandbox, "through the hub now")
            await wait_for(lambda: any(e.text == "through the hub now" for e in running.events), timeout=60)
            assert next(e for e in running.events if e.text == "through the hub now").source == "eventhub"
            tg.cancel_scope.cancel()
    warnings = [entry for entry in logs if entry["event"] == "eventhub_unreachable"]
    assert warnings and warnings[0]["log_level"] == "warning" and warnings[0]["fix"]
    assert warnings[0]["fallback"] == "webhook" and warnings[0]["reason"]
    assert any(entry["event"] == "transport_switched" for entry in logs)


async def test_doctor_says_which_transport_auto_chooses_and_why(agent_env: dict[str, str],
                                                               hub: dict[str, Any]) -> None:
    reachable = settings_from_env(auto_env(agent_env, hub, hub["endpoint"]))
    out = io.StringIO()
    assert await doctor(reachable, out, extra=transport_checks(reachable)) == 0
    assert "✓ transport: auto chooses eventhub: the event hub answered" in out.getvalue()

    down = settings_from_env(auto_env(agent_env, hub, f"sb://127.0.0.1:{closed_port()}"))
    out = io.StringIO()
    assert await doctor(down, out, extra=transport_checks(down)) == 0  # auto still runs: a warning, not a failure
    text = out.getvalue()
    assert "! transport: auto falls back to webhook while the event hub does not answer" in text
    assert "5671" in text  # the fix names the port to open

    plain = settings_from_env({**agent_env, "AGENTSEAT_MODE": "auto"})
    out = io.StringIO()
    await doctor(plain, out, extra=transport_checks(plain))
    assert "✓ transport: auto chooses webhook: no event hub configured" in out.getvalue()


async def test_auto_without_a_tunnel_polls_until_the_hub_answers(sandbox: Sandbox, agent_env: dict[str, str],
                                                                  hub: dict[str, Any]) -> None:
    port = closed_port()
    env = {**auto_env(agent_env, hub, f"sb://127.0.0.1:{port}"), "AGENTSEAT_TUNNEL": "none",
           "AGENTSEAT_CHAT_POLL_SECONDS": "5"}  # the floor: the polled DM comes within 5 s
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        runtime = running.runtime
        await wait_for(lambda: runtime.status.source == "poll", timeout=60)
        assert runtime.describe()["transport"]["transport"] == "poll"
        await dm(sandbox, "polled")
        await wait_for(lambda: any(e.text == "polled" for e in running.events), timeout=60)
        assert next(e for e in running.events if e.text == "polled").source == "poll"
        await tg.start(forward, port, int(hub["endpoint"].rsplit(":", 1)[1]))
        await wait_for(lambda: runtime.status.source == "eventhub", timeout=60)
        assert runtime.status.polling == []  # the poller stopped with the fallback
        await dm(sandbox, "pushed")
        await wait_for(lambda: any(e.text == "pushed" for e in running.events), timeout=60)
        assert next(e for e in running.events if e.text == "pushed").source == "eventhub"
        tg.cancel_scope.cancel()


async def test_auto_polls_while_the_hub_it_reads_stops_answering(sandbox: Sandbox, agent_env: dict[str, str],
                                                                  hub: dict[str, Any]) -> None:
    port, target = closed_port(), int(hub["endpoint"].rsplit(":", 1)[1])
    env = {**auto_env(agent_env, hub, f"sb://127.0.0.1:{port}"), "AGENTSEAT_CHAT_POLL_SECONDS": "5"}
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            path = anyio.CancelScope()  # the network path to the hub: cancelled, it drops every connection

            async def reachable(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                with path:
                    await forward(port, target, task_status=task_status)

            await tg.start(reachable)
            running = await start(tg, env)
            runtime = running.runtime
            await wait_for(lambda: runtime.status.source == "eventhub", timeout=60)
            assert runtime.status.polling == []

            path.cancel()  # the hub stops answering: the next probe finds it down and polling starts
            await wait_for(lambda: runtime.status.source == "eventhub+poll", timeout=60)
            assert runtime.status.polling == ["mail", "teams"]
            chosen = runtime.describe()["transport"]
            assert chosen["transport"] == "eventhub" and "polling until it does" in chosen["reason"]
            assert chosen["fix"] and chosen["next_probe"]
            assert any("the event hub stopped answering" in note for note in runtime.status.notes)
            await dm(sandbox, "while the hub is unreachable")
            await wait_for(lambda: any(e.text == "while the hub is unreachable" for e in running.events), timeout=60)
            assert next(e for e in running.events if e.text == "while the hub is unreachable").source == "poll"

            path = anyio.CancelScope()
            await tg.start(reachable)  # back: the next probe stops the polling, and the hub delivers again
            await wait_for(lambda: runtime.status.source == "eventhub", timeout=60)
            assert runtime.status.polling == []
            assert "answered" in runtime.describe()["transport"]["reason"]
            await dm(sandbox, "through the hub again")
            await wait_for(lambda: any(e.text == "through the hub again" for e in running.events), timeout=60)
            assert next(e for e in running.events if e.text == "through the hub again").source == "eventhub"
            # The hub kept the outage DM's notification; once the consumer has read every partition to its
            # end, that notification has met the polled copy, and the DM is still there once.
            with anyio.fail_after(60):
                while not read_to_the_end(await control(sandbox, "GET", "/_sandbox/eventhubs"), runtime):
                    await anyio.sleep(0.2)
            assert [e.text for e in running.events].count("while the hub is unreachable") == 1
            tg.cancel_scope.cancel()
    assert [entry["event"] for entry in logs].count("transport_outage") == 1
    assert any(entry["event"] == "transport_outage_over" for entry in logs)
