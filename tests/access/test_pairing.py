"""Who may reach the agent, end to end against the sandbox over loopback: pairing codes, approvals
from the terminal and from a sponsor's DM, held mail, group chats, other tenants, restarts."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentseat.access import held_messages
from agentseat.access.store import CODE_SECONDS, AccessStore
from agentseat.runtime.events import Event
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import Running, start, upn, wait_for
from tests.tools._mcp import chat_messages, mailbox, post_dm, post_mail

CODE = re.compile(r"code: ([A-Z0-9]{6})")


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_INBOUND_POLICY": "pairing"}


async def agent_lines(sandbox: Sandbox, chat_id: str) -> list[str]:
    agent = upn(sandbox, "agent_user")
    return [m["text"] for m in await chat_messages(sandbox, chat_id) if m["from"] == agent]


async def wait_agent_lines(sandbox: Sandbox, chat_id: str, count: int) -> list[str]:
    with anyio.fail_after(30):
        while len(lines := await agent_lines(sandbox, chat_id)) < count:
            await anyio.sleep(0.05)
    return lines


def held_texts(running: Running) -> list[str]:
    return [h.event.text for h in running.runtime.access.store.held()]


async def access_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`agentseat access ARGS` as the user runs it, in another process."""
    result = await anyio.run_process([sys.executable, "-m", "agentseat.cli", "access", *args],
                                     env={**os.environ, **env, "AGENTSEAT_LOG_LEVEL": "warning"}, check=False)
    return result.returncode, (result.stdout + result.stderr).decode()


async def ready(tg: anyio.abc.TaskGroup, env: dict[str, str], **overrides: str) -> Running:
    running = await start(tg, env, **overrides)
    await wait_for(lambda: running.runtime.status.source == "webhook")
    return running


async def test_an_unknown_dm_gets_one_code_is_held_and_a_terminal_approval_releases_it_in_order(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, agent = upn(sandbox, "colleague1"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        first = await post_dm(sandbox, grace, agent, "one")
        await post_dm(sandbox, grace, agent, "two")
        [reply] = await wait_agent_lines(sandbox, first["chat_id"], 1)
        await wait_for(lambda: held_texts(running) == ["one", "two"])
        assert reply.startswith("Hi Grace,") and (code := CODE.search(reply)) is not None
        assert len(await agent_lines(sandbox, first["chat_id"])) == 1  # one code, not one per message
        assert running.events == []  # never pushed
        access = running.runtime.describe()["access"]  # what `status` shows
        assert (access["policy"], access["pending_codes"], access["held"]) == ("pairing", 1, 2)

        rc, out = await access_cli(env, "list")
        assert rc == 0 and code.group(1) in out and "Grace Hopper" in out
        rc, out = await access_cli(env, "approve", code.group(1).lower())
        assert rc == 0 and out.startswith("approved Grace Hopper"), out
        await wait_for(lambda: len(running.events) == 2)  # the running runtime noticed the approval
        assert [(e.text, e.confirmed, e.sender_id) for e in running.events] == [
            ("one", True, sandbox.role("colleague1")), ("two", True, sandbox.role("colleague1"))]
        assert held_texts(running) == []

        await post_dm(sandbox, grace, agent, "three")  # approved for good: straight through
        await wait_for(lambda: len(running.events) == 3)
        assert [e.text for e in running.events] == ["one", "two", "three"]
        assert len(await agent_lines(sandbox, first["chat_id"])) == 1
        tg.cancel_scope.cancel()


async def test_a_sponsors_dm_approve_code_is_consumed_and_a_colleagues_is_not(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, alan, sponsor, agent = (upn(sandbox, r) for r in ("colleague1", "colleague2", "sponsor", "agent_user"))
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        asked = await post_dm(sandbox, grace, agent, "may I?")
        [reply] = await wait_agent_lines(sandbox, asked["chat_id"], 1)
        code = CODE.search(reply).group(1)  # type: ignore[union-attr]

        # Someone else typing the code approves nothing: Alan is held (and offered his own code).
        alan_dm = await post_dm(sandbox, alan, agent, f"approve {code}")
        await wait_agent_lines(sandbox, alan_dm["chat_id"], 1)
        assert held_texts(running) == ["may I?", f"approve {code}"]

        approval = await post_dm(sandbox, sponsor, agent, f"  Approve {code} ")
        [answer] = await wait_agent_lines(sandbox, approval["chat_id"], 1)
        assert answer.startswith("Approved Grace Hopper") and "1 held message released" in answer
        await wait_for(lambda: [e.text for e in running.events] == ["may I?"])
        await post_dm(sandbox, sponsor, agent, "thanks")  # the sponsor's next message is pushed as usual
        await wait_for(lambda: len(running.events) == 2)
        assert [e.text for e in running.events] == ["may I?", "thanks"]  # the approval itself never is
        assert running.runtime.access.counters.approved_in_teams == 1
        assert held_texts(running) == [f"approve {code}"]

        again = await post_dm(sandbox, sponsor, agent, f"approve {code}")  # used up
        lines = await wait_agent_lines(sandbox, again["chat_id"], 2)
        assert lines[1].startswith("no pending pairing code")
        tg.cancel_scope.cancel()


async def test_at_most_three_codes_are_pending_at_once(sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, agent = upn(sandbox, "colleague1"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        store = running.runtime.access.store
        for i in range(3):  # three other strangers asked first
            store.offer_code(_stranger(i))
        first = await post_dm(sandbox, grace, agent, "hello?")
        await wait_for(lambda: held_texts(running) == ["hello?"])
        assert await agent_lines(sandbox, first["chat_id"]) == []  # held, but no fourth code
        assert len(store.pending()) == 3
        tg.cancel_scope.cancel()


def _stranger(i: int) -> Event:
    return Event.teams(chat_id=f"19:s{i}@unq.gbl.spaces", message_id=str(i), sender_id=f"stranger-{i}",
                       sender_upn="", sender_name="", trust="colleague", text="", created_at="2026-12-06T03:00:00Z",
                       source="poll", confirmed=True)


async def test_a_code_expires_after_an_hour_and_the_sender_may_ask_again(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, sponsor, agent = upn(sandbox, "colleague1"), upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        store = running.runtime.access.store
        now = [store.clock()]
        store.clock = lambda: now[0]
        asked = await post_dm(sandbox, grace, agent, "first try")
        [old] = await wait_agent_lines(sandbox, asked["chat_id"], 1)
        now[0] += CODE_SECONDS
        late = await post_dm(sandbox, sponsor, agent, f"approve {CODE.search(old).group(1)}")  # type: ignore[union-attr]
        [answer] = await wait_agent_lines(sandbox, late["chat_id"], 1)
        assert answer.startswith("no pending pairing code") and running.events == []

        await post_dm(sandbox, grace, agent, "second try")
        _, new = await wait_agent_lines(sandbox, asked["chat_id"], 2)
        assert CODE.search(new) and CODE.search(new).group(1) != CODE.search(old).group(1)  # type: ignore[union-attr]
        assert held_texts(running) == ["first try", "second try"]
        tg.cancel_scope.cancel()


async def test_mail_from_a_stranger_is_held_without_reply_and_approved_by_address(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, agent = upn(sandbox, "colleague1"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        await post_mail(sandbox, grace, agent, "Budget", "the figures please")
        await wait_for(lambda: held_texts(running) == ["the figures please"])
        [held] = held_messages(settings_from_env(env))  # what `agentseat inbox` shows
        assert (held.event.kind, held.event.subject, held.event.sender_upn) == ("mail", "Budget", grace)
        rc, out = await access_cli(env, "approve", grace)
        assert rc == 0, out
        await wait_for(lambda: [e.subject for e in running.events] == ["Budget"])
        tg.cancel_scope.cancel()
    assert not [m for m in await mailbox(sandbox, grace) if m["subject"].startswith("RE:")]  # no reply, ever


async def test_a_paired_colleagues_mail_then_reaches_the_agent(sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, sponsor, agent = upn(sandbox, "colleague1"), upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        asked = await post_dm(sandbox, grace, agent, "hi")
        [reply] = await wait_agent_lines(sandbox, asked["chat_id"], 1)
        await post_dm(sandbox, sponsor, agent, f"approve {CODE.search(reply).group(1)}")  # type: ignore[union-attr]
        await wait_for(lambda: len(running.events) == 1)
        await post_mail(sandbox, grace, agent, "Follow-up", "by mail now")
        await wait_for(lambda: len(running.events) == 2)  # matched by her address, learnt when she paired
        assert running.events[1].subject == "Follow-up" and held_texts(running) == []
        tg.cancel_scope.cancel()


async def test_a_stranger_in_a_group_chat_is_held_without_a_code(sandbox: Sandbox, env: dict[str, str]) -> None:
    ids = [sandbox.role(r) for r in ("agent_user", "sponsor", "colleague1")]
    grace, sponsor = upn(sandbox, "colleague1"), upn(sandbox, "sponsor")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        members = [{"@odata.type": "#microsoft.graph.aadUserConversationMember", "roles": ["owner"],
                    "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{i}')"} for i in ids]
        chat: dict[str, Any] = await running.runtime.graph.post("/chats", {"chatType": "group", "topic": "ops",
                                                                           "members": members})
        await _post_in(sandbox, chat["id"], grace, "group hello")
        await wait_for(lambda: held_texts(running) == ["group hello"])
        await _post_in(sandbox, chat["id"], sponsor, "sponsor in the group")
        await wait_for(lambda: [e.text for e in running.events] == ["sponsor in the group"])
        assert await agent_lines(sandbox, chat["id"]) == []  # no code offered in a group
        assert running.runtime.access.store.pending() == []
        tg.cancel_scope.cancel()


async def _post_in(sandbox: Sandbox, chat_id: str, sender: str, text: str) -> None:
    from tests.runtime.test_runtime import control

    await control(sandbox, "POST", "/_sandbox/messages", {"from": sender, "chat_id": chat_id, "text": text})


@pytest.mark.parametrize("allow_external", [False, True])
async def test_senders_from_other_tenants_pair_only_when_allowed(
        sandbox: Sandbox, env: dict[str, str], allow_external: bool) -> None:
    grace, agent = upn(sandbox, "colleague1"), upn(sandbox, "agent_user")
    outsider = "mallory@fabrikam.test"
    flag = {"allow_external": "1" if allow_external else "0"}
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env, **flag)
        # Mail from outside the tenant: held, never answered.
        await post_mail(sandbox, outsider, agent, "Invoice", "pay this")
        await wait_for(lambda: held_texts(running) == ["pay this"])
        assert running.runtime.access.store.held()[0].event.trust == "external"
        # A Teams sender of another tenant (the sandbox has none: Graph's message, marked external).
        chat = await post_dm(sandbox, grace, agent, "from a guest")
        await wait_for(lambda: len(held_texts(running)) == 2 and bool(running.runtime.access.counters.codes_sent))
        before = len(await agent_lines(sandbox, chat["chat_id"]))
        guest = Event.teams(chat_id=chat["chat_id"], message_id="guest-1", sender_id="guest-object-id",
                            sender_upn="", sender_name="Guest", trust="external", text="let me in",
                            created_at="2026-12-06T03:00:00Z", source="poll", confirmed=True)
        await running.runtime.access.hold(guest)
        codes = running.runtime.access.store.pending()
        assert any(c.sender_key == "guest-object-id" for c in codes) is allow_external
        assert len(await agent_lines(sandbox, chat["chat_id"])) == before + allow_external
        rc, out = await access_cli({**env, "AGENTSEAT_ALLOW_EXTERNAL": flag["allow_external"]}, "approve", outsider)
        if allow_external:
            assert rc == 0, out
            await wait_for(lambda: [e.text for e in running.events] == ["pay this"])
        else:
            assert rc == 1 and "another tenant" in out
            assert "pay this" in held_texts(running)
        tg.cancel_scope.cancel()


async def test_the_allowlist_survives_a_restart_and_an_offline_approval_releases_once(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, alan, agent = upn(sandbox, "colleague1"), upn(sandbox, "colleague2"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        g = await post_dm(sandbox, grace, agent, "grace 1")
        a = await post_dm(sandbox, alan, agent, "alan 1")
        codes = [CODE.search((await wait_agent_lines(sandbox, c["chat_id"], 1))[0]).group(1)  # type: ignore[union-attr]
                 for c in (g, a)]
        await post_dm(sandbox, grace, agent, "grace 2")
        await wait_for(lambda: len(held_texts(running)) == 3)
        tg.cancel_scope.cancel()
    # No runtime runs: the terminal approves; the next start releases, in order, once.
    for code in codes:
        assert (await access_cli(env, "approve", code))[0] == 0
    assert len(AccessStore(Path(env["AGENTSEAT_STATE_DIR"]) / "access.db").held()) == 3
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        await wait_for(lambda: len(running.events) == 3)
        assert [e.text for e in running.events] == ["grace 1", "alan 1", "grace 2"]
        await post_dm(sandbox, grace, agent, "after the restart")
        await wait_for(lambda: len(running.events) == 4)
        assert len({e.key for e in running.events}) == 4 and held_texts(running) == []
        tg.cancel_scope.cancel()
    rc, _ = await access_cli(env, "revoke", grace)
    async with anyio.create_task_group() as tg:
        running = await ready(tg, env)
        await post_dm(sandbox, grace, agent, "revoked")
        await wait_for(lambda: "revoked" in held_texts(running))
        # The code is sent after the message is held: wait for it rather than race it.
        assert rc == 0 and len(await wait_agent_lines(sandbox, g["chat_id"], 2)) == 2  # a new code after revoking
        tg.cancel_scope.cancel()


async def test_allowlist_policy_lets_allow_upns_through_and_holds_others_without_a_code(
        sandbox: Sandbox, env: dict[str, str]) -> None:
    grace, alan, agent = upn(sandbox, "colleague1"), upn(sandbox, "colleague2"), upn(sandbox, "agent_user")
    async with anyio.create_task_group() as tg:
        # A Teams message names its sender by object id only: the UPN is looked up in Graph.
        running = await ready(tg, env, inbound_policy="allowlist", allow=alan.upper())
        held = await post_dm(sandbox, grace, agent, "not on the list")
        await post_dm(sandbox, alan, agent, "on the list")
        await wait_for(lambda: [e.text for e in running.events] == ["on the list"])
        await wait_for(lambda: held_texts(running) == ["not on the list"])
        assert running.events[0].confirmed and running.events[0].trust == "colleague"
        assert await agent_lines(sandbox, held["chat_id"]) == []  # codes are for `pairing` only
        tg.cancel_scope.cancel()
