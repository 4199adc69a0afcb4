"""Intake processes (AGENTSEAT_INTAKE_PROCESSES): real child processes on the runtime's socket.

The first tests bind the shared socket and run only the intake process on it (the runtime's own
server is not started), so every POST provably goes through the child; what it hands back
reaches the runtime's pipeline, callbacks and counters here. The last one runs the whole
runtime against the sandbox with two processes taking POSTs.
"""

from __future__ import annotations

import os
import signal
from collections import ChainMap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import pytest

from agentseat.access import AccessPolicy
from agentseat.graph.subscription import KnownSubscription
from agentseat.intake_workers import IntakeWorkers, Lent
from agentseat.runtime.delivery_watch import DeliveryWatch
from agentseat.runtime.inbox import Inbox
from agentseat.runtime.intake import Intake
from agentseat.runtime.pipeline import NotificationPipeline
from agentseat.runtime.webhook import WebhookServer, bind
from agentseat.sandbox.app import Sandbox
from agentseat.tenant_facts import TenantFacts

from ._notify import (
    COLLEAGUE_ID,
    TEAMS_SUB,
    World,
    body,
    chat_message,
    lifecycle_item,
    new_id,
    rich_chat_item,
    rich_mail_item,
)
from .test_runtime import control, start, upn, wait_for


@dataclass
class Beside:
    """The runtime's side (its pipeline, counters and callbacks) and the URL only the child serves."""

    url: str
    lent: Lent
    workers: IntakeWorkers
    webhook: WebhookServer
    known: dict[str, KnownSubscription]
    #: Subscriptions the runtime screens with but has not told the child about yet (created a moment ago).
    unannounced: dict[str, KnownSubscription]
    resyncs: list[tuple[str, str]]

    def child(self) -> dict[str, Any]:
        return self.workers.describe()[0]


@asynccontextmanager
async def beside(world: World) -> AsyncIterator[Beside]:
    settings = world.settings.model_copy(update={"jwks_url": world.jwks._url, "inbound_policy": "tenant"})
    inbox = Inbox(settings.state_dir / "inbox.db", own_ids=world.policy.own_ids)
    access = AccessPolicy(settings)
    intake = Intake(inbox, settings.state_dir / "intake.db", policy=world.policy, gate=access)
    known, unannounced = dict(world.subscriptions), dict[str, KnownSubscription]()
    calls, resyncs = world.calls, []
    pipeline = NotificationPipeline(settings=settings, inbox=inbox, keyring=world.keyring, jwks=world.jwks,
                                    policy=world.policy, subscriptions=ChainMap(unannounced, known), on_lifecycle=calls.on_lifecycle,
                                    on_mail_fetch=calls.on_mail_fetch, on_chat_fetch=calls.on_chat_fetch, store=intake)

    async def on_channel_fetch(ref: Any) -> None:
        raise AssertionError("no channel in these tests")

    lent = Lent(settings=settings, ring=world.keyring, policy=world.policy, access=access, known=known,
                pipeline=pipeline, inbox=inbox, intake=intake, delivery=DeliveryWatch(inbox),
                on_lifecycle=calls.on_lifecycle, on_mail_fetch=calls.on_mail_fetch, on_chat_fetch=calls.on_chat_fetch,
                on_channel_fetch=on_channel_fetch, resync=lambda kind, reason: resyncs.append((kind, reason)),
                facts=TenantFacts(settings.state_dir))
    webhook = WebhookServer(settings, pipeline)
    webhook.socket = bind("127.0.0.1", 0)  # shared, but only the intake process accepts on it
    workers = IntakeWorkers(lent, 1)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(workers.run, webhook)
            here = Beside(f"http://127.0.0.1:{webhook.socket.getsockname()[1]}", lent, workers, webhook, known,
                          unannounced, resyncs)
            await wait_for(lambda: "posts" in here.child(), timeout=60)  # its first counts: it is serving
            yield here
            tg.cancel_scope.cancel()
    finally:
        webhook.socket.close()
        intake.close()
        access.close()
        inbox.close()


async def post(world: World, url: str, payload: bytes) -> int:
    # A connection per POST, as a sender with no pool: each is accepted afresh.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
            session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
        return resp.status


def colleague_dm(world: World, text: str = "from a colleague") -> tuple[bytes, str]:
    message = chat_message(new_id(), sender_id=COLLEAGUE_ID, text=text)
    return body([rich_chat_item(world.keys, message)], [world.token()]), message["id"]


async def test_the_intake_process_stores_each_item_once_and_wakes_the_runtime(world: World) -> None:
    async with beside(world) as here:
        payload, message_id = colleague_dm(world)
        woke = anyio.Event()

        async def sink() -> None:  # a sink of the runtime's process: woken by the child's note
            await here.lent.inbox.wait_for_new(0)
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sink)
            assert await post(world, f"{here.url}/notifications", payload) == 202
            assert await post(world, f"{here.url}/notifications", payload) == 202  # Graph's redelivery
            await woke.wait()
        [event] = here.lent.inbox.read(0)
        assert (event.message_id, event.text, event.trust, event.source) == (
            message_id, "from a colleague", "colleague", "webhook")
        assert event.key in here.lent.delivery._notified  # the delivery watch heard of it
        await wait_for(lambda: here.child().get("posts") == 2)
        assert here.child()["stored"] == 1 and here.child()["forwarded"] == 0
        assert here.webhook.stats.posts == 0  # the runtime's own server took nothing
        # What the child saw of the validation tokens is the runtime's tenant fact (`status`).
        await wait_for(lambda: here.lent.facts.get("validation_tokens") is not None)


async def test_a_sponsors_claim_is_kept_for_the_runtime_to_confirm(world: World) -> None:
    async with beside(world) as here:
        message = chat_message(new_id(), text="do the thing")  # from the sponsor
        assert await post(world, f"{here.url}/notifications",
                          body([rich_chat_item(world.keys, message)], [world.token()])) == 202
        # Kept pending in intake.db by the child; the runtime's intake heard and will confirm it.
        await wait_for(lambda: here.lent.intake.counters["pending"] == 1)
        assert here.lent.inbox.count() == 0  # never stored from the notification alone


async def test_what_the_child_cannot_judge_comes_back_to_the_runtime(world: World) -> None:
    async with beside(world) as here:
        # A lifecycle event acts on the runtime's subscriptions.
        assert await post(world, f"{here.url}/lifecycle", body([lifecycle_item()], [world.token()])) == 202
        assert [(sub.id, event) for sub, event in world.calls.lifecycle] == [(TEAMS_SUB, "reauthorizationRequired")]
        # A subscription the runtime created a moment ago: the child does not know it yet.
        new_sub = new_id()
        here.unannounced[new_sub] = KnownSubscription(new_sub, "teams", "fresh-secret")
        message = chat_message(new_id(), sender_id=COLLEAGUE_ID, text="right after subscribing")
        item = rich_chat_item(world.keys, message, subscription=new_sub, client_state="fresh-secret")
        assert await post(world, f"{here.url}/notifications", body([item], [world.token()])) == 202
        assert [e.text for e in here.lent.inbox.read(0)] == ["right after subscribing"]
        await wait_for(lambda: here.child().get("forwarded") == 2)
        assert here.webhook.stats.posts == 2  # counted once, by the runtime that answered them
        # A rich mail notification carries no body: the read is queued in the runtime.
        assert await post(world, f"{here.url}/notifications", body([rich_mail_item(world.keys)], [world.token()])) == 202
        await wait_for(lambda: len(world.calls.mail) == 1)


async def test_the_child_learns_new_subscriptions_and_answers_health_for_all(world: World) -> None:
    async with beside(world) as here:
        new_sub = new_id()
        here.known[new_sub] = KnownSubscription(new_sub, "teams", "later-secret")
        await anyio.sleep(1.0)  # a few updates: the child knows it now (no timing is asserted)
        message = chat_message(new_id(), sender_id=COLLEAGUE_ID, text="later")
        item = rich_chat_item(world.keys, message, subscription=new_sub, client_state="later-secret")
        assert await post(world, f"{here.url}/notifications", body([item], [world.token()])) == 202
        assert [e.text for e in here.lent.inbox.read(0)] == ["later"]
        await wait_for(lambda: here.child().get("stored") == 1)
        assert here.child()["forwarded"] == 0
        async with aiohttp.ClientSession() as session, session.get(f"{here.url}/health") as resp:
            health = await resp.json()
        assert health["ok"] is True and health["counts"]["stored"] == 1


async def test_a_killed_intake_process_is_started_again(world: World) -> None:
    async with beside(world) as here:
        first = here.child()["pid"]
        os.kill(first, signal.SIGKILL)
        await wait_for(lambda: here.child()["starts"] == 2 and "posts" in here.child(), timeout=60)
        assert here.child()["pid"] != first
        payload, _ = colleague_dm(world, "after the restart")
        assert await post(world, f"{here.url}/notifications", payload) == 202
        assert [e.text for e in here.lent.inbox.read(0)] == ["after the restart"]


@pytest.mark.parametrize("sender", ["sponsor", "colleague1"])
async def test_the_runtime_with_two_intake_processes_delivers_each_dm_once(
        sandbox: Sandbox, agent_env: dict[str, str], sender: str) -> None:
    env = {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_INTAKE_PROCESSES": "2",
           "AGENTSEAT_INBOUND_POLICY": "tenant"}
    async with anyio.create_task_group() as tg:
        running = await start(tg, env)
        runtime = running.runtime
        await wait_for(lambda: runtime.status.source == "webhook")
        await wait_for(lambda: runtime.intake_workers is not None and "posts" in runtime.intake_workers.describe()[0],
                       timeout=60)
        texts = [f"{sender} {i}" for i in range(6)]
        for text in texts:
            await control(sandbox, "POST", "/_sandbox/messages",
                          {"from": upn(sandbox, sender), "to": upn(sandbox, "agent_user"), "text": text})
        await wait_for(lambda: len(running.events) >= len(texts))
        await anyio.sleep(0.5)  # room for a duplicate to show up, if there were one
        assert sorted(e.text for e in running.events) == sorted(texts)
        assert {e.trust for e in running.events} == {"sponsor" if sender == "sponsor" else "colleague"}
        assert runtime.describe()["intake_processes"][0]["pid"] > 0
        tg.cancel_scope.cancel()
