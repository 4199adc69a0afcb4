"""The runtime end to end against the sandbox: events arrive through webhooks or polling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.inbox import Event
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env


async def control(sandbox: Sandbox, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(
        method, sandbox.url + path, json=body, ssl=sandbox.client_ssl_context()
    ) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json() if resp.content_type == "application/json" else None


def upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait on a condition; the timeout is only a safety bound, never a measurement."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


class Running:
    """A runtime running in the test's task group, with its events collected."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.events: list[Event] = []

    async def sink(self, runtime: Runtime) -> None:
        from agentseat.runtime.bus import follow

        async for event in follow(runtime.inbox, "test", from_start=True):
            self.events.append(event)


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook"}


async def start(tg: anyio.abc.TaskGroup, env: dict[str, str], **overrides: str) -> Running:
    runtime = Runtime(settings_from_env({**env, **{f"AGENTSEAT_{k.upper()}": v for k, v in overrides.items()}}))
    running = Running(runtime)
    await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
    return running


async def test_dm_arrives_through_the_webhook(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        await wait_for(lambda: running.runtime.status.source == "webhook")
        posted = await control(sandbox, "POST", "/_sandbox/messages",
                               {"from": upn(sandbox, "sponsor"), "to": upn(sandbox, "agent_user"), "text": "hello agent"})
        await wait_for(lambda: len(running.events) >= 1)
        event = running.events[0]
        assert (event.kind, event.source, event.text) == ("teams", "webhook", "hello agent")
        assert event.chat_id == posted["chat_id"] and event.message_id == posted["message_id"]
        assert event.trust == "sponsor"
        tg.cancel_scope.cancel()


async def test_mail_arrives_through_the_webhook_with_its_body(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        await wait_for(lambda: running.runtime.status.source == "webhook")
        await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                      "to": upn(sandbox, "agent_user"), "subject": "Report", "body": "the full body text"})
        await wait_for(lambda: len(running.events) >= 1)
        event = running.events[0]
        assert (event.kind, event.source, event.subject, event.text) == ("mail", "webhook", "Report", "the full body text")
        assert event.trust == "colleague"
        tg.cancel_scope.cancel()


async def test_poll_mode_delivers_the_same_events_without_a_tunnel(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env, mode="poll", tunnel="none", chat_poll_seconds="1", mail_poll_seconds="1")
        await wait_for(lambda: running.runtime.poller.counters.chat_rounds >= 1)
        await control(sandbox, "POST", "/_sandbox/messages",
                      {"from": upn(sandbox, "colleague2"), "to": upn(sandbox, "agent_user"), "text": "polled"})
        await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                      "to": upn(sandbox, "agent_user"), "subject": "S", "body": "B"})
        await wait_for(lambda: len(running.events) >= 2)
        assert sorted((e.kind, e.source) for e in running.events) == [("mail", "poll"), ("teams", "poll")]
        assert sandbox.stats.throttled.total() == 0
        tg.cancel_scope.cancel()
