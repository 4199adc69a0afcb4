"""Nothing is lost when a push goes nowhere: events stay unread until the agent acts on them.

Claude Code drops channel pushes without a word in many sessions (claude-code-host §1). These
tests drive `agentseat serve` with mcp's real stdio client, which receives each push and then
ignores it, as such a host does; the events must still reach the agent through the tools.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentseat.sandbox.app import Sandbox
from tests.tools._mcp import Served, post_dm, post_mail, serve


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def _upn(sandbox: Sandbox, role: str) -> str:
    return sandbox.tenant.users[sandbox.role(role)].upn


async def _unread(served: Served) -> dict:
    return (await served.call_json("status"))["unread"]  # type: ignore[no-any-return]


async def test_an_ignored_push_leaves_the_event_unread_for_this_and_the_next_session(
        sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    colleague, agent = _upn(sandbox, "colleague1"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path, "first") as first:
        posted = await post_dm(sandbox, colleague, agent, "did you get this? <b>nobody saw the push</b>")
        [push] = await first.wait_pushes(1)  # pushed, and the client does nothing with it
        assert push.meta is not None and push.meta["message_id"] == posted["message_id"]
        unread = await _unread(first)
        assert unread["unread"] == 1 and unread["oldest_unread_seq"] == 1
        assert isinstance(unread["oldest_unread_age_seconds"], int) and unread["oldest_unread_age_seconds"] >= 0
        assert "read_events" in unread["next"]
    # A new session (say `claude -p`, which has no channel at all) still gets it, and it is not pushed again.
    async with serve(env, tmp_path, "second") as second:
        await second.channel_caught_up(1)
        got = await second.call_json("read_events")
        [event] = got["events"]
        assert event["message_id"] == posted["message_id"] and event["unread"] is True
        assert got["marked_read"] is True and got["unread_left"] == 0 and got["more"] is False
        assert (await _unread(second))["unread"] == 0
        assert (await second.call_json("read_events"))["events"] == []
        # History re-reads it as read, and reading history changes nothing.
        history = await second.call_json("read_events", since=0)
        assert [(e["message_id"], e["unread"]) for e in history["events"]] == [(posted["message_id"], False)]
        assert history["marked_read"] is False
        assert second.pushes == []


async def test_history_reads_leave_unread_events_unread(sandbox: Sandbox, env: dict[str, str],
                                                        tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        posted = await post_dm(sandbox, sponsor, agent, "history")
        await served.wait_pushes(1)
        history = await served.call_json("read_events", since=0)
        assert [(e["message_id"], e["unread"]) for e in history["events"]] == [(posted["message_id"], True)]
        assert (await _unread(served))["unread"] == 1
        assert [e["message_id"] for e in (await served.call_json("read_events"))["events"]] == [posted["message_id"]]


async def test_wait_for_event_returns_the_oldest_unread_event_first(sandbox: Sandbox, env: dict[str, str],
                                                                   tmp_path: Path) -> None:
    sponsor, colleague, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "colleague2"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        older = await post_dm(sandbox, colleague, agent, "first")
        await served.wait_pushes(1)  # stored before the next is posted: seqs follow posting order
        newer = await post_dm(sandbox, sponsor, agent, "second")
        await served.wait_pushes(2)
        one = await served.call_json("wait_for_event", timeout_seconds=55)
        two = await served.call_json("wait_for_event", timeout_seconds=55)
        assert [one["event"]["message_id"], two["event"]["message_id"]] == [older["message_id"],
                                                                            newer["message_id"]]
        assert one["unread_left"] == 1 and two["unread_left"] == 0 and one["event"]["unread"] is True
        nothing = await served.call_json("wait_for_event", timeout_seconds=1)
        assert nothing["timed_out"] is True and nothing["event"] is None


async def test_a_reply_in_the_chat_marks_that_chat_read_and_no_other(sandbox: Sandbox, env: dict[str, str],
                                                                    tmp_path: Path) -> None:
    sponsor, colleague, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "colleague1"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        asked = await post_dm(sandbox, sponsor, agent, "status please")
        again = await post_dm(sandbox, sponsor, agent, "and the numbers")
        await served.wait_pushes(2)  # stored before the next is posted: seqs follow posting order
        other = await post_dm(sandbox, colleague, agent, "unrelated")
        await served.wait_pushes(3)
        replied = await served.call_json("reply_in_chat", chat_id=asked["chat_id"], text="on it")
        assert replied["sent"] is True and replied["marked_read"] == 2
        unread = await _unread(served)
        assert unread["unread"] == 1 and unread["oldest_unread_seq"] == 3
        # A direct message by address acts on that person's one-on-one chat.
        sent = await served.call_json("send_teams_message", to=colleague, text="noted")
        assert sent["chat_id"] == other["chat_id"] and sent["marked_read"] == 1
        assert (await _unread(served))["unread"] == 0
        assert again["chat_id"] == asked["chat_id"]


async def test_a_mail_reply_marks_that_mail_read(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    colleague, agent = _upn(sandbox, "colleague1"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        answered = await post_mail(sandbox, colleague, agent, "Question", "Can you check?")
        await served.wait_pushes(1)
        left = await post_mail(sandbox, colleague, agent, "FYI", "No answer needed")
        await served.wait_pushes(2)
        replied = await served.call_json("reply_email", message_id=answered["message_id"], body="Checked.")
        assert replied["marked_read"] == 1
        events = (await served.call_json("read_events"))["events"]
        assert [e["message_id"] for e in events] == [left["message_id"]]


async def test_mark_read_by_seq_and_by_message_id(sandbox: Sandbox, env: dict[str, str], tmp_path: Path) -> None:
    sponsor, agent = _upn(sandbox, "sponsor"), _upn(sandbox, "agent_user")
    async with serve(env, tmp_path) as served:
        posted = []
        for i in range(3):  # each stored before the next is posted: seqs follow posting order
            posted.append(await post_dm(sandbox, sponsor, agent, f"note {i}"))
            await served.wait_pushes(i + 1)
        by_seq = await served.call_json("mark_read", seqs=[1])
        assert by_seq["marked_read"] == 1 and by_seq["unread_left"] == 2
        by_id = await served.call_json("mark_read", message_ids=[posted[2]["message_id"]])
        assert by_id["marked_read"] == 1 and by_id["unread_left"] == 1
        assert (await served.call_json("mark_read", seqs=[1]))["marked_read"] == 0  # already read: no error

        none = await served.call("mark_read")
        assert none.is_error and "give seqs or message_ids" in none.content[0].text  # type: ignore[union-attr]
        unknown = await served.call("mark_read", seqs=[2, 99], message_ids=["nope"])
        text = unknown.content[0].text  # type: ignore[union-attr]
        assert unknown.is_error and "seq 99" in text and "'nope'" in text and "nothing was marked" in text
        invalid = await served.call("mark_read", seqs=[0])
        assert invalid.is_error and "seqs" in invalid.content[0].text  # type: ignore[union-attr]

        [event] = (await served.call_json("read_events"))["events"]  # the refused call marked nothing
        assert event["message_id"] == posted[1]["message_id"]


async def test_a_send_acts_only_on_what_the_channel_had_pushed_when_it_started(tmp_path: Path) -> None:
    """An event stored but not yet claimed by the channel was pushed to nobody: a reply cannot be about it."""
    from agentseat.runtime.inbox import Event, Inbox
    from agentseat.tools.events import acted_in, seen_through

    def dm(message_id: str) -> Event:
        return Event.teams(chat_id="19:dm", message_id=message_id, sender_id="u", sender_upn="u@contoso.test",
                           sender_name="U", trust="colleague", text="hi", created_at="2026-01-01T00:00:00Z",
                           source="poll")

    with Inbox(tmp_path / "inbox.db") as inbox:
        inbox.append([dm("a")])
        assert await seen_through(inbox) == 1  # no channel in this process: everything stored counts
        inbox.ensure_group("channel", 0)
        inbox.claim_next("channel", "here:1")
        inbox.append([dm("b")])  # stored, not yet pushed
        seen = await seen_through(inbox)
        assert seen == 1
        assert await acted_in(inbox, seen, chat_id="19:dm") == 1
        assert [e.message_id for e in inbox.unread()] == ["b"]
