"""Issue 11, variant 3, against the real sandbox: a tenant that refuses `$orderby` on chat lists,
and one that ignores `$filter` on a chat's messages. Every message is stored once, none missed."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.chat_listing import ORDERBY_RETRY_SECONDS, ChatLister, preview_time
from agentseat.sandbox.app import Sandbox, SandboxOptions
from agentseat.sandbox.graph.chats import create_group_chat, ensure_one_on_one, post_chat_message
from tests.runtime.test_runtime import control
from tests.sandbox._graph import on_loop
from tests.sandbox.test_graph_chats import no_throttle

CHAT_LISTS = "GET /me/chats"
CHAT_READS = "GET /chats/{chat_id}/messages"


def _texts(runtime: Runtime) -> Counter[str]:
    return Counter(e.text for e in runtime.inbox.read(0, 10_000))


def _group_chats(sandbox: Sandbox, count: int) -> list[Any]:
    agent, sponsor, colleague = sandbox.role("agent_user"), sandbox.role("sponsor"), sandbox.role("colleague1")
    return [create_group_chat(sandbox, [agent, sponsor, colleague], f"topic {i}") for i in range(count)]


def _post(sandbox: Sandbox, chats: list[Any], prefix: str) -> list[str]:
    sponsor = sandbox.role("sponsor")
    return [post_chat_message(sandbox, chat, sponsor, f"{prefix} {i}").content for i, chat in enumerate(chats)]


class TestOrderbyRejected:
    @pytest.fixture
    def sandbox_options(self) -> SandboxOptions:
        return SandboxOptions(behaviour={"chats_orderby": "rejected"})

    async def test_listing_is_sorted_here_complete_across_pages_and_stored_once(
            self, sandbox: Sandbox, agent_settings: Any) -> None:
        no_throttle(sandbox)
        chats = on_loop(sandbox, _group_chats, sandbox, 55)  # more than one page of 50
        runtime = Runtime(agent_settings)
        try:
            await runtime.poller.sync_chats("startup")  # the starting point: older messages are not news
            sent = on_loop(sandbox, _post, sandbox, chats, "first")
            await runtime.poller.sync_chats("timer")
            assert _texts(runtime) == Counter(sent)
            assert runtime.facts.get("chats_orderby") == "rejected"
            # One refused ordered request in all: the next rounds list without asking again.
            lists = sandbox.stats.requests[CHAT_LISTS]
            more = on_loop(sandbox, _post, sandbox, chats[:3], "second")
            await runtime.poller.sync_chats("timer")
            await runtime.poller.sync_chats("timer")
            assert _texts(runtime) == Counter(sent + more)  # nothing twice, nothing missed
            assert sandbox.stats.requests[CHAT_LISTS] - lists == 4  # two rounds, two pages each, no $orderby
            # The listing the poller walks is Graph's order, made here: a chat updated without a new
            # message (a member added) comes first unordered, last by its newest message.
            def touch() -> None:
                chats[3].last_updated = sandbox.clock.now() + 60  # the oldest newest-message
            on_loop(sandbox, touch)
            lister = ChatLister(runtime.graph, {"orderby_rejected_at": 0.0}, None, clock=lambda: 1.0)
            assert not lister.ordered
            [page] = [p async for p in lister.pages()]
            assert len(page) == 55 and {c["id"] for c in page} == {c.id for c in chats}
            assert [preview_time(c) for c in page] == sorted((preview_time(c) for c in page), reverse=True)
            assert page[-1]["id"] == chats[3].id
        finally:
            await runtime.aclose()

    async def test_ordering_is_asked_again_after_a_day_and_recorded_when_it_works(
            self, sandbox: Sandbox, agent_settings: Any) -> None:
        no_throttle(sandbox)
        runtime = Runtime(agent_settings)
        now = [1_000_000.0]
        try:
            state: dict[str, Any] = {}
            lister = ChatLister(runtime.graph, state, runtime.facts, clock=lambda: now[0])
            assert [p async for p in lister.pages()] == [[]]
            assert state["orderby_rejected_at"] == now[0] and runtime.facts.get("chats_orderby") == "rejected"
            now[0] += ORDERBY_RETRY_SECONDS - 1
            assert not lister.ordered
            await control(sandbox, "POST", "/_sandbox/behaviour", {"chats_orderby": "supported"})
            now[0] += 1
            assert lister.ordered
            [p async for p in lister.pages()]
            assert runtime.facts.get("chats_orderby") == "supported" and "orderby_rejected_at" not in state
        finally:
            await runtime.aclose()


class TestFilterIgnored:
    @pytest.fixture
    def sandbox_options(self) -> SandboxOptions:
        return SandboxOptions(behaviour={"messages_filter": "ignored"})

    async def test_paging_stops_at_the_watermark_without_duplicates_or_misses(
            self, sandbox: Sandbox, agent_settings: Any) -> None:
        no_throttle(sandbox)
        agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
        chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
        on_loop(sandbox, lambda: [post_chat_message(sandbox, chat, sponsor, f"old {i}") for i in range(120)])
        await anyio.sleep(0.3)  # ids are epoch ms and rise one per message: let the clock pass the last
        runtime = Runtime(agent_settings)
        try:
            await runtime.poller.sync_chats("startup")  # 120 older messages: not news
            first = on_loop(sandbox, lambda: [post_chat_message(sandbox, chat, sponsor, f"a {i}").content
                                              for i in range(70)])
            await runtime.poller.sync_chats("timer")
            assert _texts(runtime) == Counter(first)  # past one page of 50, and not one old message
            assert runtime.facts.get("messages_filter") == "ignored"
            reads = sandbox.stats.requests[CHAT_READS]
            second = on_loop(sandbox, lambda: [post_chat_message(sandbox, chat, sponsor, f"b {i}").content
                                               for i in range(3)])
            await runtime.poller.sync_chats("timer")
            assert _texts(runtime) == Counter(first + second)
            assert sandbox.stats.requests[CHAT_READS] - reads == 1  # stopped at the first older message
        finally:
            await runtime.aclose()


async def test_an_applied_filter_is_recorded_as_supported(sandbox: Sandbox, agent_settings: Any) -> None:
    no_throttle(sandbox)
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    runtime = Runtime(agent_settings)
    try:
        await runtime.poller.sync_chats("startup")
        sent = on_loop(sandbox, lambda: [post_chat_message(sandbox, chat, sponsor, f"m {i}").content
                                         for i in range(2)])
        await runtime.poller.sync_chats("timer")
        assert _texts(runtime) == Counter(sent)
        assert runtime.facts.get("messages_filter") == "supported"  # settled by one more read
        assert runtime.facts.get("chats_orderby") == "supported"
    finally:
        await runtime.aclose()


async def test_filter_stays_unverified_until_a_read_can_tell(sandbox: Sandbox, agent_settings: Any) -> None:
    no_throttle(sandbox)
    agent, sponsor = sandbox.role("agent_user"), sandbox.role("sponsor")
    chat, _ = on_loop(sandbox, ensure_one_on_one, sandbox, agent, sponsor)
    runtime = Runtime(agent_settings)
    try:
        await runtime.poller.sync_chats("startup")
        on_loop(sandbox, post_chat_message, sandbox, chat, sponsor, "only one")
        await runtime.poller.sync_chats("timer")
        assert runtime.facts.get("messages_filter") == "unverified"  # one message proves nothing
    finally:
        await runtime.aclose()
