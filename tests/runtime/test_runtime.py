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


async def _dm(sandbox: Sandbox, sender: str, text: str) -> dict[str, Any]:
    return await control(sandbox, "POST", "/_sandbox/messages",
                         {"from": upn(sandbox, sender), "to": upn(sandbox, "agent_user"), "text": text})


def _texts(running: Running) -> list[str]:
    return [e.text for e in running.events]


async def test_500_messages_arrive_exactly_once_despite_dropped_duplicated_reordered_notifications(
    sandbox: Sandbox, env: dict[str, str]
) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env, reconcile_seconds="60")
        await wait_for(lambda: running.runtime.status.source == "webhook")
        await control(sandbox, "POST", "/_sandbox/faults",
                      {"notifications": {"drop": 0.2, "duplicate": 0.1, "reorder": 0.1}, "seed": 7})
        sent = [f"m{i}" for i in range(500)]
        for i, text in enumerate(sent):
            await _dm(sandbox, "colleague1" if i % 2 else "colleague2", text)
        await control(sandbox, "DELETE", "/_sandbox/faults")
        # Dropped notifications are Graph's loss; the reconciliation behind webhooks recovers them.
        await running.runtime.poller.resync("teams", "test")
        await wait_for(lambda: len(running.events) >= 500, timeout=60)
        assert sorted(_texts(running)) == sorted(sent)
        assert len({e.key for e in running.events}) == 500
        assert sandbox.stats.notifications["dropped"] > 0 and sandbox.stats.notifications["duplicated"] > 0
        tg.cancel_scope.cancel()


async def test_lifecycle_events_lose_no_message(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        await wait_for(lambda: running.runtime.status.source == "webhook")
        manager = running.runtime.manager
        assert manager is not None
        teams_id = manager.states["teams"].id
        mail_id = manager.states["mail"].id

        # reauthorizationRequired: exactly one PATCH (renew + reauthorize), no reauthorize call.
        patches = sandbox.stats.requests["PATCH /subscriptions/{sub_id}"]
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{teams_id}/reauthorize")
        await wait_for(lambda: sandbox.stats.requests["PATCH /subscriptions/{sub_id}"] == patches + 1)
        assert sandbox.stats.requests["POST /subscriptions/{sub_id}/reauthorize"] == 0

        # subscriptionRemoved: messages sent while it was gone are resynced, the subscription recreated.
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{teams_id}/remove")
        await _dm(sandbox, "sponsor", "during removal")
        await wait_for(lambda: manager.states["teams"].id not in ("", teams_id))
        await wait_for(lambda: "during removal" in _texts(running))

        # missed (mail only): a delta resync picks up what Graph did not deliver.
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        await control(sandbox, "POST", "/_sandbox/mail", {"from": upn(sandbox, "colleague1"),
                      "to": upn(sandbox, "agent_user"), "subject": "missed one", "body": "x"})
        await control(sandbox, "DELETE", "/_sandbox/faults")
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{mail_id}/missed")
        await wait_for(lambda: any(e.subject == "missed one" for e in running.events))

        # Expiry: Graph deletes it silently; the next renewal finds a 404 and recreates.
        await control(sandbox, "POST", f"/_sandbox/subscriptions/{manager.states['teams'].id}/expire")
        await _dm(sandbox, "colleague2", "after expiry")
        await manager.renew("teams", reason="test")
        await wait_for(lambda: "after expiry" in _texts(running))
        assert len(running.events) == len({e.key for e in running.events})
        tg.cancel_scope.cancel()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_restart_adopts_its_subscriptions_instead_of_duplicating(sandbox: Sandbox, env: dict[str, str]) -> None:
    port = str(free_port())  # the same public URL across restarts
    for _ in range(2):
        async with anyio.create_task_group() as tg:
            running = await start(tg, env, webhook_port=port)
            await wait_for(lambda: running.runtime.status.source == "webhook")
            tg.cancel_scope.cancel()
    assert len(sandbox.tenant.subscriptions) == 2
    assert sandbox.stats.requests["POST /subscriptions"] == 2


async def test_a_new_public_url_moves_every_subscription_and_loses_nothing(sandbox: Sandbox, env: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        await wait_for(lambda: running.runtime.status.source == "webhook")
        tg.cancel_scope.cancel()
    first_urls = {s.notification_url for s in sandbox.tenant.subscriptions.values()}
    await _dm(sandbox, "sponsor", "while the runtime was down")
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)  # a new port: the tunnel URL changed
        await wait_for(lambda: running.runtime.status.source == "webhook")
        await _dm(sandbox, "sponsor", "after the move")
        await wait_for(lambda: {"while the runtime was down", "after the move"} <= set(_texts(running)))
        urls = {s.notification_url for s in sandbox.tenant.subscriptions.values()}
        assert len(sandbox.tenant.subscriptions) == 2 and not urls & first_urls
        assert [e.source for e in running.events if e.text == "after the move"] == ["webhook"]
        tg.cancel_scope.cancel()


class FlakyTunnel:
    """A tunnel test peer whose URL can be taken away and given back (as ngrok loss would)."""

    def __init__(self) -> None:
        self.up = anyio.Event()
        self.up.set()
        self.lost = anyio.Event()
        self.public_url: str | None = None
        self.starts = 0

    async def start(self, port: int) -> str:
        from agentseat.errors import TunnelError

        if not self.up.is_set():
            raise TunnelError("tunnel is down")
        self.starts += 1
        self.lost = anyio.Event()
        self.public_url = f"http://127.0.0.1:{port}"
        return self.public_url

    async def stop(self) -> None:
        self.public_url = None

    async def wait_lost(self) -> None:
        await self.lost.wait()

    def take_down(self) -> None:
        self.up = anyio.Event()
        self.lost.set()


async def test_auto_mode_polls_while_the_tunnel_is_gone_and_returns_to_webhooks(
    sandbox: Sandbox, env: dict[str, str]
) -> None:
    tunnel = FlakyTunnel()
    settings = settings_from_env({**env, "AGENTSEAT_MODE": "auto", "AGENTSEAT_CHAT_POLL_SECONDS": "1"})
    runtime = Runtime(settings, tunnel=tunnel)  # type: ignore[arg-type]
    running = Running(runtime)
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([running.sink], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "webhook")
        tunnel.take_down()
        # Graph cannot reach a lost tunnel: nothing it sends arrives.
        await control(sandbox, "POST", "/_sandbox/faults", {"notifications": {"drop": 1.0}})
        await wait_for(lambda: runtime.status.source == "poll")
        await _dm(sandbox, "sponsor", "while polling")
        await wait_for(lambda: "while polling" in _texts(running))
        assert [e.source for e in running.events if e.text == "while polling"] == ["poll"]
        await control(sandbox, "DELETE", "/_sandbox/faults")
        tunnel.up.set()
        await wait_for(lambda: runtime.status.source == "webhook", timeout=90)
        await _dm(sandbox, "sponsor", "webhooks again")
        await wait_for(lambda: "webhooks again" in _texts(running))
        assert [e.source for e in running.events if e.text == "webhooks again"] == ["webhook"]
        tg.cancel_scope.cancel()


async def test_refused_subscription_is_explained_and_polled_in_auto_mode(sandbox: Sandbox, env: dict[str, str]) -> None:
    from tests.sandbox._agent import grant_agent_consent

    # Without Mail.Read consent Graph refuses the mail subscription (403).
    sandbox.portal.call(lambda: sandbox.tenant.grants.clear())  # type: ignore[attr-defined]
    grant_agent_consent(sandbox, ["User.Read", "User.ReadBasic.All", "Chat.ReadWrite", "ChatMessage.Send"])
    async with anyio.create_task_group() as tg:
        # No grace: a grant missing since long before the start is refused at once, not waited for.
        running = await start(tg, env, mode="auto", replication_grace_seconds="0")
        await wait_for(lambda: running.runtime.status.source == "webhook+poll")
        described = running.runtime.describe()
        assert described["subscriptions"]["mail"]["state"] == "refused"
        assert "403" in described["subscriptions"]["mail"]["error"]
        assert described["polling"] == ["mail"]
        tg.cancel_scope.cancel()
