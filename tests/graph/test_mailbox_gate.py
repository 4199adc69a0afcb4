"""Outlook's concurrency limit: at most 4 requests in flight per app ID and mailbox
(throttling-limits, "Outlook service limits"). The sandbox refuses the fifth with 429
ApplicationThrottled and counts the peak per mailbox; the client's gate keeps under it.

Every Graph answer is delayed (`graph_latency_ms`) so requests really overlap; the counts
come from the sandbox's `/_sandbox/stats`, never from timing.
"""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.config import Settings
from agentseat.graph.client import GraphClient
from agentseat.graph.mailbox_gate import ME, mailbox_of
from agentseat.sandbox.app import Sandbox, SandboxOptions
from tests.graph.test_client import _events, control, logs, provider_for  # noqa: F401 - logs is a fixture
from tests.runtime.test_runtime import upn

OVERLAPPING = {"graph_latency_ms": [30, 80]}


def test_mailbox_of_names_the_mailbox_a_url_addresses() -> None:
    me = ("agent-id", "agent@contoso.test")
    assert mailbox_of("/me/messages/AAMk=", me) == ME
    assert mailbox_of("/me/mailFolders/inbox/messages/delta", me) == ME
    assert mailbox_of("/me/sendMail", me) == ME
    assert mailbox_of("/users/agent%40contoso.test/messages", me) == ME  # the same mailbox as /me
    assert mailbox_of("/users/AGENT-ID/messages/x/reply", me) == ME
    assert mailbox_of("/users/Other@contoso.test/events", me) == "other@contoso.test"
    assert mailbox_of("/me/chats", me) is None and mailbox_of("/me", me) is None  # Teams, directory: not Outlook
    assert mailbox_of("/subscriptions", me) is None and mailbox_of("/users/x", me) is None


async def _mail_the_agent(sandbox: Sandbox, count: int) -> list[str]:
    ids = []
    for i in range(count):
        body = {"from": upn(sandbox, "colleague1"), "to": upn(sandbox, "agent_user"), "subject": f"n{i}", "body": "x"}
        async with aiohttp.ClientSession() as s, s.post(sandbox.url + "/_sandbox/mail", json=body,
                                                        ssl=sandbox.client_ssl_context()) as resp:
            assert resp.status < 300
            ids.append((await resp.json())["message_id"])
    return ids


def _send(n: int, to: str) -> dict[str, Any]:
    return {"message": {"subject": f"parallel {n}", "body": {"contentType": "Text", "content": "hi"},
                        "toRecipients": [{"emailAddress": {"address": to}}]}, "saveToSentItems": False}


@pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour=OVERLAPPING)])
async def test_many_concurrent_mail_reads_and_sends_keep_four_in_flight_and_are_never_throttled(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    ids = await _mail_the_agent(sandbox, 12)
    me = sandbox.role("agent_user")
    to = upn(sandbox, "colleague1")
    control(sandbox, "DELETE", "/_sandbox/stats")
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        await graph.get("/me")  # the token first, so the mail calls below start together
        async with anyio.create_task_group() as tg:
            for i, mid in enumerate(ids):  # by /me and by /users/{id}: one mailbox either way
                tg.start_soon(graph.get, f"/me/messages/{mid}" if i % 2 else f"/users/{me}/messages/{mid}")
            for n in range(8):
                tg.start_soon(graph.post, "/me/sendMail", _send(n, to))
            for _ in range(4):
                tg.start_soon(graph.get, "/me/mailFolders/inbox/messages")
        assert graph.mailboxes.peak(ME) == 4
    stats = control(sandbox, "GET", "/_sandbox/stats")
    assert stats["mailbox_in_flight_peak"][me] == 4, stats["mailbox_in_flight_peak"]
    assert not [k for k in stats["throttled"] if "MailboxConcurrency" in k], stats["throttled"]
    assert _events(logs, "graph_retry") == []
    sent = [m["subject"] for m in control(sandbox, "GET", f"/_sandbox/mail/{to}")["messages"]]
    assert sorted(s for s in sent if s.startswith("parallel")) == sorted(f"parallel {n}" for n in range(8))


@pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour=OVERLAPPING)])
async def test_the_sandbox_refuses_the_fifth_request_in_flight_as_outlook_does(
        sandbox: Sandbox, agent_settings: Settings) -> None:
    token = await provider_for(agent_settings).get()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{agent_settings.graph_url}/me/messages"
    answers: list[tuple[int, Any, str | None]] = []

    async with aiohttp.ClientSession() as s:
        async def call() -> None:
            async with s.get(url, headers=headers, ssl=sandbox.client_ssl_context()) as resp:
                answers.append((resp.status, await resp.json(), resp.headers.get("Retry-After")))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
    refused = [a for a in answers if a[0] == 429]
    assert refused and len(answers) - len(refused) >= 4
    status, body, retry_after = refused[0]
    assert body["error"]["code"] == "ApplicationThrottled"
    assert body["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert retry_after is not None and float(retry_after) > 0
    assert control(sandbox, "GET", "/_sandbox/stats")["mailbox_in_flight_peak"][sandbox.role("agent_user")] > 4


@pytest.mark.parametrize("sandbox_options", [SandboxOptions(behaviour={**OVERLAPPING, "outlook_max_concurrency": 2})])
async def test_with_a_limit_of_two_every_send_is_retried_after_retry_after_and_none_is_lost(
        sandbox: Sandbox, agent_settings: Settings, logs: io.StringIO) -> None:  # noqa: F811
    to = upn(sandbox, "colleague2")
    async with GraphClient(agent_settings, provider_for(agent_settings)) as graph:
        await graph.get("/me")
        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(graph.post, "/me/sendMail", _send(n, to))
        assert graph.mailboxes.capacity(ME) < 4  # Outlook said so: the gate let fewer in
    stats = control(sandbox, "GET", "/_sandbox/stats")
    assert stats["throttled"].get("POST /me/sendMail (MailboxConcurrency)", 0) >= 1, stats["throttled"]
    assert {e["status"] for e in _events(logs, "graph_retry")} == {429}
    sent = [m["subject"] for m in control(sandbox, "GET", f"/_sandbox/mail/{to}")["messages"]]
    assert sorted(s for s in sent if s.startswith("parallel")) == sorted(f"parallel {n}" for n in range(12))


async def test_a_cancelled_waiter_takes_no_slot_and_a_lowered_gate_opens_again_after_quiet() -> None:
    from agentseat.graph.mailbox_gate import MailboxGate

    now = [0.0]
    gate = MailboxGate(2, recover_after=60, clock=lambda: now[0])
    held = anyio.Event()
    inside: list[str] = []

    async def hold(name: str) -> None:
        async with gate.slot("m"):
            inside.append(name)
            await held.wait()

    queued = anyio.CancelScope()

    async def third() -> None:
        with queued:  # a third caller gives up while it waits for a slot
            await hold("c")

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "a")
        tg.start_soon(hold, "b")
        while len(inside) < 2:
            await anyio.sleep(0)
        tg.start_soon(third)
        for _ in range(5):
            await anyio.sleep(0)
        queued.cancel()
        held.set()
    assert inside == ["a", "b"] and gate.peak("m") == 2
    gate.refused("m")
    assert gate.capacity("m") == 1
    async with gate.slot("m"):
        pass
    assert gate.capacity("m") == 1  # still within the quiet period
    now[0] = 61.0
    async with gate.slot("m"):
        pass
    assert gate.capacity("m") == 2
    async with anyio.create_task_group() as tg:  # both slots usable again, nothing leaked
        held = anyio.Event()
        inside.clear()
        tg.start_soon(hold, "d")
        tg.start_soon(hold, "e")
        while len(inside) < 2:
            await anyio.sleep(0)
        held.set()
