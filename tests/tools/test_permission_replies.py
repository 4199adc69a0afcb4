"""The permission store and the intake interceptor that reads sponsors' answers, on the sandbox.

Replies are real Teams messages read back from the sandbox's Graph with the agent's token,
as the intake hands them over; the interceptor is called directly (the MCP path is in
test_permission_e2e.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentseat.runtime.app import Runtime
from agentseat.runtime.events import Event
from agentseat.runtime.normalize import chat_message_event
from agentseat.runtime.permission_replies import PermissionReplies
from agentseat.runtime.permissions import TTL_SECONDS, PermissionStore, parse_reply
from agentseat.sandbox.app import Sandbox
from agentseat.tools.permission import PermissionRequestParams, question
from tests.tools._mcp import chat_messages, post_chat, post_dm

ME = f"{socket.gethostname()}:{os.getpid()}"  # a requesting process that is alive: this one


@pytest.mark.parametrize(("text", "expected"), [
    ("yes abcde", ("allow", "abcde")), ("  Y  ABCDE ", ("allow", "abcde")), ("no abcde", ("deny", "abcde")),
    ("N zzzzz\n", ("deny", "zzzzz")), ("yes abcdl", None), ("yes abcd", None), ("yes abcdef", None),
    ("yes abcde please", None), ("ok abcde", None), ("yesabcde", None), ("yes", None),
])
def test_only_the_exact_reply_form_parses(text: str, expected: Any) -> None:
    assert parse_reply(text) == expected


def test_store_answers_once_in_time_and_notices_once(tmp_path: Path) -> None:
    store = PermissionStore(tmp_path)
    assert (tmp_path / "permissions.db").stat().st_mode & 0o777 == 0o600
    assert store.add("abcde", ME, "Bash")
    assert not store.add("abcde", "other:1", "Bash")  # a live request keeps its id
    assert store.answer("abcde", "deny", "S1", "teams:c:m")
    assert not store.answer("abcde", "allow", "S2")  # the first answer stands
    assert store.get("abcde").status == "deny"  # type: ignore[union-attr]

    assert store.add("fghij", ME, "Bash", now=time.time() - TTL_SECONDS - 1)
    assert not store.answer("fghij", "allow", "S1")
    assert store.first_notice("fghij", "S1", "late") and not store.first_notice("fghij", "s1", "late")
    assert store.first_notice("fghij", "S1", "group")


async def _event(runtime: Runtime, posted: dict[str, Any]) -> Event:
    """The message as the intake hands it to interceptors: read from Graph with the agent's token."""
    message = await runtime.graph.get(f"/chats/{posted['chat_id']}/messages/{posted['message_id']}")
    event = chat_message_event(message, runtime.policy, source="poll", confirmed=True, chat_id=posted["chat_id"])
    assert event is not None
    return event


class World:
    def __init__(self, sandbox: Sandbox, runtime: Runtime, replies: PermissionReplies) -> None:
        self.sandbox, self.runtime, self.replies, self.store = sandbox, runtime, replies, replies.store
        self.sponsor = sandbox.tenant.users[sandbox.role("sponsor")]
        self.agent = sandbox.tenant.users[sandbox.role("agent_user")]
        self.colleague = sandbox.tenant.users[sandbox.role("colleague1")]

    async def ask(self, request_id: str, *, age: float = 0.0) -> str:
        """A request as the asking `serve` records it, with the question in the sponsor's DM."""
        assert self.store.add(request_id, ME, "Bash", now=time.time() - age)
        sponsor = self.sponsor.id.lower()
        chat_id, _ = await self.replies.dms.send(sponsor, question(PermissionRequestParams(
            request_id=request_id, tool_name="Bash", description="run tests", input_preview="pytest -q")))
        self.store.asked(request_id, sponsor, chat_id)
        return chat_id

    async def reply(self, text: str, *, sender: Any = None, chat_id: str | None = None) -> bool:
        sender = sender or self.sponsor
        if chat_id is None:
            posted = await post_dm(self.sandbox, sender.upn, self.agent.upn, text)
        else:
            posted = await post_chat(self.sandbox, sender.upn, chat_id, text)
        return await self.replies(await _event(self.runtime, posted))

    async def group_chat(self) -> str:
        """A group chat of the agent, the sponsor and a colleague, created by the agent through Graph."""
        url = self.runtime.settings.graph_url
        members = [{"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
                    "user@odata.bind": f"{url}/users('{u.id}')"} for u in (self.agent, self.sponsor, self.colleague)]
        return str((await self.runtime.graph.post("/chats", {"chatType": "group", "members": members}))["id"])

    async def agent_lines(self, chat_id: str) -> list[str]:
        return [m["text"] for m in await chat_messages(self.sandbox, chat_id) if m["from"] == self.agent.upn]


@pytest.fixture
async def world(sandbox: Sandbox, agent_settings: Any) -> AsyncIterator[World]:
    runtime = Runtime(agent_settings)
    try:
        await runtime.resolve_sponsors()
        yield World(sandbox, runtime, PermissionReplies(agent_settings, runtime.graph, runtime.policy))
    finally:
        await runtime.aclose()


async def test_a_sponsors_yes_in_their_dm_answers_and_is_consumed(world: World) -> None:
    dm = await world.ask("abcde")
    [asked] = await world.agent_lines(dm)
    assert "Bash" in asked and "yes abcde" in asked and "no abcde" in asked
    assert await world.reply("  YES abcde ") is True
    assert world.store.get("abcde").status == "allow"  # type: ignore[union-attr]
    assert (await world.agent_lines(dm))[-1].startswith("Allowed: Bash")


async def test_a_sponsors_no_denies(world: World) -> None:
    await world.ask("vwxyz")
    assert await world.reply("n vwxyz") is True
    assert world.store.get("vwxyz").status == "deny"  # type: ignore[union-attr]


async def test_a_colleagues_answer_changes_nothing_and_nobody_is_told(world: World) -> None:
    dm = await world.ask("abcde")
    assert await world.reply("yes abcde", sender=world.colleague) is False
    assert world.store.get("abcde").status == "pending"  # type: ignore[union-attr]
    assert len(await world.agent_lines(dm)) == 1  # the question only
    colleague_dm = (await post_dm(world.sandbox, world.colleague.upn, world.agent.upn, "hi"))["chat_id"]
    assert await world.agent_lines(colleague_dm) == []


async def test_an_answer_in_a_group_chat_changes_nothing_and_the_sponsor_is_told_once(world: World) -> None:
    dm = await world.ask("abcde")
    group = await world.group_chat()
    assert await world.reply("yes abcde", chat_id=group) is False
    assert await world.reply("yes abcde", chat_id=group) is False
    assert world.store.get("abcde").status == "pending"  # type: ignore[union-attr]
    assert await world.agent_lines(group) == []  # never answered in a group
    notes = (await world.agent_lines(dm))[1:]
    assert len(notes) == 1 and "one-on-one" in notes[0]


async def test_a_late_answer_changes_nothing_and_the_sponsor_is_told_once(world: World) -> None:
    dm = await world.ask("abcde", age=TTL_SECONDS + 5)
    assert await world.reply("yes abcde") is False
    assert await world.reply("yes abcde") is False
    assert world.store.get("abcde").status == "expired"  # type: ignore[union-attr]
    notes = (await world.agent_lines(dm))[1:]
    assert len(notes) == 1 and "expired" in notes[0]


@pytest.mark.parametrize("text", ["yes abcdl", "yes abcde please", "yes", "no, not that"])
async def test_a_malformed_answer_changes_nothing_and_the_sponsor_is_told_once(world: World, text: str) -> None:
    dm = await world.ask("abcde")
    assert await world.reply(text) is False
    assert await world.reply(text) is False
    assert world.store.get("abcde").status == "pending"  # type: ignore[union-attr]
    notes = (await world.agent_lines(dm))[1:]
    assert len(notes) == 1 and "yes abcde" in notes[0]


async def test_an_unknown_id_is_refused_and_other_messages_pass_silently(world: World) -> None:
    dm = await world.ask("abcde")
    assert await world.reply("yes qqqqq") is False
    assert await world.reply("please summarise the report") is False
    assert world.store.get("abcde").status == "pending"  # type: ignore[union-attr]
    notes = (await world.agent_lines(dm))[1:]
    assert len(notes) == 1 and "open one is abcde" in notes[0]


async def test_with_nothing_asked_a_reply_shaped_message_is_just_a_message(world: World) -> None:
    dm = (await post_dm(world.sandbox, world.sponsor.upn, world.agent.upn, "hello"))["chat_id"]
    assert await world.reply("no sweat") is False
    assert await world.agent_lines(dm) == []


async def test_an_unconfirmed_sponsor_message_never_answers(world: World) -> None:
    await world.ask("abcde")
    posted = await post_dm(world.sandbox, world.sponsor.upn, world.agent.upn, "yes abcde")
    event = await _event(world.runtime, posted)
    forged = Event.teams(chat_id=event.chat_id, message_id=event.message_id, sender_id=event.sender_id,  # type: ignore[arg-type]
                         sender_upn="", sender_name="", trust="sponsor", text="yes abcde",
                         created_at=event.created_at, source="webhook", confirmed=False)
    assert await world.replies(forged) is False
    assert world.store.get("abcde").status == "pending"  # type: ignore[union-attr]


async def test_an_answer_for_a_session_that_ended_is_refused(world: World) -> None:
    dm = await world.ask("abcde")
    with world.store._tx() as conn:  # the asking serve died: a pid that cannot exist
        conn.execute("UPDATE requests SET process = ? WHERE request_id = 'abcde'", (f"{socket.gethostname()}:99999999",))
    assert await world.reply("yes abcde") is False
    notes = (await world.agent_lines(dm))[1:]
    assert len(notes) == 1 and "ended" in notes[0]


async def test_the_answer_read_again_is_consumed_again_and_acknowledged_once(world: World) -> None:
    dm = await world.ask("abcde")
    posted = await post_dm(world.sandbox, world.sponsor.upn, world.agent.upn, "yes abcde")
    event = await _event(world.runtime, posted)
    assert await world.replies(event) is True
    assert await world.replies(event) is True  # as after a restart's resync: never stored, never re-answered
    assert len(await world.agent_lines(dm)) == 2  # the question, one "Allowed"


async def test_the_answer_seen_twice_at_once_is_consumed_by_both(world: World) -> None:
    """The poller and a confirmation can hand the intake the same reply at the same moment;
    the loser of the store's write must still consume it, or the answer is also pushed."""
    dm = await world.ask("abcde")
    posted = await post_dm(world.sandbox, world.sponsor.upn, world.agent.upn, "yes abcde")
    event = await _event(world.runtime, posted)
    results: list[bool] = []
    # Both read the pending request before either writes its answer: the race, made certain.
    read_request, reads, both_read = world.store.aget, [0], anyio.Event()

    async def aget(request_id: str) -> Any:
        request = await read_request(request_id)
        reads[0] += 1
        if reads[0] >= 2:
            both_read.set()
        await both_read.wait()
        return request

    world.store.aget = aget  # type: ignore[method-assign]

    async def hand_over() -> None:
        results.append(await world.replies(event))

    async with anyio.create_task_group() as tg:
        tg.start_soon(hand_over)
        tg.start_soon(hand_over)
    assert results == [True, True]
    assert world.store.get("abcde").status == "allow"  # type: ignore[union-attr]
    lines = await world.agent_lines(dm)
    assert len(lines) == 2 and lines[-1].startswith("Allowed: Bash")  # no "already answered" note
