"""`agentseat bot` against the sandbox: a real handler script per message, replies in the same thread.

The handler is a small Python file that records every run (and its environment) in
`runs.jsonl` and acts on the message text: "fail", "hang", "silent", "big", "slow ..."
or anything else, which it echoes back.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from agentseat.bot import FAILED, TEAMS_REPLY_BYTES, TIMED_OUT, Bot, BotOptions, _Progress, fit
from agentseat.runtime.app import Runtime
from agentseat.runtime.inbox import Event, Inbox
from agentseat.sandbox.app import Sandbox
from tests.conftest import settings_from_env
from tests.runtime.test_runtime import control, upn, wait_for
from tests.tools._mcp import chat_messages, mailbox, post_dm, post_mail
from tests.tools.test_mentions_e2e import AGENT, ALAN, GRACE, group_chat, say

HANDLER = r'''
import json, os, pathlib, subprocess, sys, time

out = pathlib.Path(sys.argv[1])
event = json.load(sys.stdin)
text = event["text"]
env = {k: v for k, v in os.environ.items() if k.startswith("AGENTSEAT_")}

def record(phase):
    with (out / "runs.jsonl").open("a") as f:
        f.write(json.dumps({"phase": phase, "message_id": event["message_id"], "text": text, "env": env}) + "\n")

record("start")
if text == "fail":
    print("partial output", flush=True)
    print("Traceback: SECRET-DETAIL", file=sys.stderr)
    sys.exit(3)
if text == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (out / "grandchild.pid").write_text(str(child.pid))
    time.sleep(600)
if text == "big":
    print("x" * 100_000)
elif text.startswith("slow"):
    time.sleep(0.2)
    print("echo: " + text)
elif text != "silent":
    print("echo: " + text)
record("end")
'''


@pytest.fixture
def handler(tmp_path: Path) -> str:
    """The --exec line: this test's handler script, writing its records to tmp_path."""
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    return shlex.join([sys.executable, str(script), str(tmp_path)])


@pytest.fixture
def env(agent_env: dict[str, str]) -> dict[str, str]:
    return {**agent_env, "AGENTSEAT_MODE": "webhook", "AGENTSEAT_TUNNEL": "loopback"}


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def agent_messages(sandbox: Sandbox, chat_id: str) -> list[dict[str, Any]]:
    return [m for m in await chat_messages(sandbox, chat_id) if m["from"] == upn(sandbox, "agent_user")]


async def wait_agent_messages(sandbox: Sandbox, chat_id: str, count: int) -> list[dict[str, Any]]:
    """The agent's messages in the chat, once there are at least `count` (60 s safety bound)."""
    with anyio.fail_after(60):
        while len(found := await agent_messages(sandbox, chat_id)) < count:
            await anyio.sleep(0.05)
    return found


def handled(runtime: Runtime, message_id: str) -> bool:
    """The bot's cursor has passed the event of `message_id`: it was handled, refused or skipped."""
    events = [e for e in runtime.inbox.read(0, 1000) if e.message_id == message_id]
    return bool(events) and runtime.inbox.cursor("bot") >= events[0].seq


@asynccontextmanager
async def bot_in_process(env: dict[str, str], handler: str, *allow: str, timeout: float = 30.0
                         ) -> AsyncIterator[tuple[Runtime, Bot]]:
    runtime = Runtime(settings_from_env(env))
    bot = Bot(BotOptions.parse(handler, allow, timeout))
    async with anyio.create_task_group() as tg:
        await tg.start(lambda task_status: runtime.run([bot], task_status=task_status))
        await wait_for(lambda: runtime.status.source == "webhook" and bot.ready.is_set())
        yield runtime, bot
        tg.cancel_scope.cancel()


# --- the command, as a user runs it ----------------------------------------------------------------------
def _log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@asynccontextmanager
async def bot_command(env: dict[str, str], tmp_path: Path, name: str, *args: str) -> AsyncIterator[Path]:
    """`agentseat bot ARGS` as a subprocess, ready (subscribed and cursor set); stopped with SIGTERM."""
    log_path = tmp_path / f"{name}.log"
    child_env = {**os.environ, **env, "AGENTSEAT_LOG_FORMAT": "json"}
    with log_path.open("w") as errlog:
        process = await anyio.open_process([sys.executable, "-m", "agentseat.cli", "bot", *args], env=child_env,
                                           cwd=tmp_path, stdout=errlog, stderr=errlog)
        try:
            with anyio.fail_after(60):
                while True:
                    events = _log_events(log_path)
                    names = {e.get("event") for e in events}
                    subscribed = {e.get("kind") for e in events if e.get("event") == "subscription_created"}
                    if "bot_ready" in names and subscribed >= {"teams", "mail"}:
                        break
                    assert process.returncode is None, log_path.read_text()
                    await anyio.sleep(0.05)
            yield log_path
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await process.wait() == 0, log_path.read_text()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()


async def test_bot_command_replies_in_chat_and_mail_and_a_restart_reruns_nothing(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with bot_command(env, tmp_path, "first", "--exec", handler, "--timeout", "30"):
        posted = await post_dm(sandbox, sponsor, agent, "Hi bot, status please")
        [reply] = await wait_agent_messages(sandbox, posted["chat_id"], 1)
        assert reply["text"] == "echo: Hi bot, status please"

        await post_mail(sandbox, sponsor, agent, "Weekly report", "Is it done?")
        with anyio.fail_after(60):
            while not (answers := [m for m in await mailbox(sandbox, sponsor) if m["subject"] == "RE: Weekly report"]):
                await anyio.sleep(0.05)
        assert answers[0]["from"] == agent and answers[0]["body"].startswith("echo: Is it done?")

    down = await post_dm(sandbox, sponsor, agent, "sent while the bot was down")
    async with bot_command(env, tmp_path, "second", "--exec", handler):
        replies = await wait_agent_messages(sandbox, posted["chat_id"], 2)
        assert replies[1]["text"] == "echo: sent while the bot was down"

    started = [r["message_id"] for r in runs(tmp_path) if r["phase"] == "start"]
    assert len(started) == 3 and len(set(started)) == 3  # each message ran once, across the restart
    assert down["message_id"] in started
    with Inbox(Path(env["AGENTSEAT_STATE_DIR"]) / "inbox.db") as inbox:  # each answered event is read
        assert inbox.count() == 3 and inbox.unread_summary()["unread"] == 0


# --- failures ---------------------------------------------------------------------------------------------
async def test_a_failing_handler_is_reported_briefly_and_its_stderr_only_logged(
        sandbox: Sandbox, env: dict[str, str], handler: str) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    with capture_logs() as logs:
        async with bot_in_process(env, handler):
            posted = await post_dm(sandbox, sponsor, agent, "fail")
            [reply] = await wait_agent_messages(sandbox, posted["chat_id"], 1)
    assert reply["text"] == FAILED
    assert "SECRET" not in reply["text"] and "partial output" not in reply["text"]
    [failed] = [e for e in logs if e["event"] == "bot_handler_failed"]
    assert failed["returncode"] == 3 and "stderr" not in failed and failed["stderr_chars"] > 0
    # The handler's stderr may echo message text: only a debug line carries it.
    [detail] = [e for e in logs if e["event"] == "bot_handler_stderr"]
    assert detail["log_level"] == "debug" and "SECRET-DETAIL" in detail["stderr"]


async def test_a_hanging_handler_is_killed_with_its_children_and_the_chat_goes_on(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with bot_in_process(env, handler, timeout=1.0):
        posted = await post_dm(sandbox, sponsor, agent, "hang")
        await post_dm(sandbox, sponsor, agent, "still there?")
        first, second = await wait_agent_messages(sandbox, posted["chat_id"], 2)
    assert first["text"] == TIMED_OUT.format(seconds=1.0)
    assert second["text"] == "echo: still there?"
    pid = int((tmp_path / "grandchild.pid").read_text())
    await wait_for(lambda: _gone(pid))


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def test_long_output_is_cut_to_fit_teams_and_empty_output_sends_nothing(
        sandbox: Sandbox, env: dict[str, str], handler: str) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    with capture_logs() as logs:
        async with bot_in_process(env, handler):
            silent = await post_dm(sandbox, sponsor, agent, "silent")
            await post_dm(sandbox, sponsor, agent, "big")
            [reply] = await wait_agent_messages(sandbox, silent["chat_id"], 1)
    assert len(reply["content"].encode()) <= TEAMS_REPLY_BYTES
    assert reply["content"].startswith("xxxx") and "output cut" in reply["content"]
    assert any(e["event"] == "bot_handler_no_output" for e in logs)


# --- who may run the handler -----------------------------------------------------------------------------
async def test_someone_not_allowed_gets_one_refusal_per_chat_and_never_runs_the_handler(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    grace, allowed, agent = upn(sandbox, "colleague1"), upn(sandbox, "colleague2"), upn(sandbox, "agent_user")
    async with bot_in_process(env, handler, allowed) as (runtime, bot):
        first = await post_dm(sandbox, grace, agent, "run this for me")
        second = await post_dm(sandbox, grace, agent, "please, run it now")
        await post_mail(sandbox, grace, agent, "Request", "run it by mail")
        mail = await post_mail(sandbox, grace, agent, "Request again", "and again")
        await wait_for(lambda: handled(runtime, second["message_id"]) and handled(runtime, mail["message_id"]))
        colleague = await post_dm(sandbox, allowed, agent, "named by --allow")
        await wait_agent_messages(sandbox, colleague["chat_id"], 1)
    # A restart remembers the refusal: Grace's next message is not refused again.
    async with bot_in_process(env, handler, allowed) as (runtime, bot):
        third = await post_dm(sandbox, grace, agent, "one more time")
        await wait_for(lambda: handled(runtime, third["message_id"]))
        assert bot.refused == 0

    [refusal] = await agent_messages(sandbox, first["chat_id"])
    assert refusal["text"].startswith("Hi Grace, thanks for your message.")
    assert len([m for m in await mailbox(sandbox, grace) if m["subject"].startswith("RE: Request")]) == 1
    assert [r["text"] for r in runs(tmp_path)] == ["named by --allow", "named by --allow"]  # start and end
    assert (await agent_messages(sandbox, colleague["chat_id"]))[0]["text"] == "echo: named by --allow"


async def test_under_pairing_a_stranger_gets_a_code_not_the_handler_until_a_sponsor_approves(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    grace, alan, agent = upn(sandbox, "colleague1"), upn(sandbox, "colleague2"), upn(sandbox, "agent_user")
    pairing = {**env, "AGENTSEAT_INBOUND_POLICY": "pairing"}
    async with bot_in_process(pairing, handler, alan) as (runtime, bot):
        asked = await post_dm(sandbox, grace, agent, "run this for me")
        [code_reply] = await wait_agent_messages(sandbox, asked["chat_id"], 1)
        assert "code: " in code_reply["text"] and runs(tmp_path) == []
        named = await post_dm(sandbox, alan, agent, "named by --allow")  # --allow adds to the allowlist
        [echo] = await wait_agent_messages(sandbox, named["chat_id"], 1)
        assert echo["text"] == "echo: named by --allow"

        code = code_reply["text"].split("code: ")[1][:6]
        process = await anyio.run_process([sys.executable, "-m", "agentseat.cli", "access", "approve", code],
                                          env={**os.environ, **pairing}, check=False)
        assert process.returncode == 0, process.stderr
        _, answer = await wait_agent_messages(sandbox, asked["chat_id"], 2)  # her held message, handled now
        assert answer["text"] == "echo: run this for me"
        assert bot.refused == 0 and bot.handled == 2
    assert [r["text"] for r in runs(tmp_path) if r["phase"] == "start"] == ["named by --allow", "run this for me"]


async def test_shell_metacharacters_in_a_message_never_execute(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    marker = tmp_path / "pwned"
    text = (f"$(touch {marker}1); touch {marker}2 && echo x > {marker}3 | tee {marker}4 `touch {marker}5`"
            f"\n'; rm -rf {tmp_path} #")
    async with bot_in_process(env, handler):
        posted = await post_dm(sandbox, sponsor, agent, text)
        [reply] = await wait_agent_messages(sandbox, posted["chat_id"], 1)
    assert reply["text"] == "echo: " + text
    assert not list(tmp_path.glob("pwned*")) and (tmp_path / "handler.py").exists()
    [start, _end] = runs(tmp_path)
    # The handler's environment names the event, carries none of its text and none of agentseat's settings.
    assert start["env"]["AGENTSEAT_EVENT_KIND"] == "teams"
    assert start["env"]["AGENTSEAT_EVENT_MESSAGE_ID"] == posted["message_id"]
    assert "AGENTSEAT_KEY_PASSPHRASE" not in start["env"] and "AGENTSEAT_STATE_DIR" not in start["env"]
    assert not any(marker.name in v for v in start["env"].values())


async def test_handlers_of_one_chat_run_one_at_a_time_in_order(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    texts = [f"slow {i}" for i in range(4)]
    async with bot_in_process(env, handler):
        posted = [await post_dm(sandbox, sponsor, agent, t) for t in texts]
        replies = await wait_agent_messages(sandbox, posted[0]["chat_id"], len(texts))
    assert [r["text"] for r in replies] == [f"echo: {t}" for t in texts]
    assert [(r["phase"], r["text"]) for r in runs(tmp_path)] == [(p, t) for t in texts for p in ("start", "end")]


# --- small parts ------------------------------------------------------------------------------------------
def test_fit_cuts_on_a_character_boundary_and_says_so() -> None:
    assert fit("short", 100) == "short"
    cut = fit("é" * 1000, 300)
    assert len(cut.encode()) <= 300 and cut.startswith("éé") and "of 2000 bytes shown" in cut


def _events(prefix: str, count: int) -> list[Event]:
    return [Event.teams(chat_id=f"c{i}", message_id=f"{prefix}{i}", sender_id="u", sender_upn="", sender_name="",
                        trust="sponsor", text="t", source="poll", created_at="2026-01-01T00:00:00Z")
            for i in range(count)]


async def test_a_first_start_skips_history_and_a_later_start_resumes_even_with_nothing_handled(
        tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.db") as inbox:
        assert await _Progress(inbox, "bot").load() == 0  # nothing stored yet
        history = inbox.append(_events("old", 2))
        # Events stored while this never-used bot was down are still ahead of it.
        assert await _Progress(inbox, "bot").load() == 0 and history[0].seq > 0
    with Inbox(tmp_path / "other.db") as inbox:
        history = inbox.append(_events("old", 2))
        assert await _Progress(inbox, "bot").load() == history[-1].seq


async def test_progress_neither_skips_nor_reruns_events_finished_out_of_order(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.db") as inbox:
        stored = inbox.append(_events("m", 5))
        inbox.set_meta("bot:started", "0")
        inbox.advance("bot", stored[0].seq)  # handled before
        seqs = [e.seq for e in stored[1:]]
        progress = _Progress(inbox, "bot")
        await progress.load()
        for seq in seqs:
            progress.start(seq)
        await progress.finish(seqs[2])  # a fast chat finishes before the slow ones
        await progress.finish(seqs[1])
        assert inbox.cursor("bot") == seqs[0] - 1  # seqs[0] is still running
        restarted = _Progress(inbox, "bot")  # a crash now: what would a restart do?
        assert await restarted.load() == seqs[0] - 1 and restarted.done == {seqs[1], seqs[2]}
        await progress.finish(seqs[0])
        assert inbox.cursor("bot") == seqs[2]
        await progress.finish(seqs[3])
        assert inbox.cursor("bot") == seqs[3] and inbox.get_meta("bot:done") is None


async def test_a_forged_sponsor_message_never_runs_the_handler(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    from tests.runtime._forge import chat_item, claim, post, subscription

    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with bot_in_process(env, handler) as (runtime, bot):
        first = await post_dm(sandbox, sponsor, agent, "genuine first")
        await wait_for(lambda: handled(runtime, first["message_id"]))
        sub = subscription(sandbox, runtime, "teams")
        forged = claim(sandbox, first["chat_id"], "1999999999999", "sponsor", "forged: run it")
        assert await post(sandbox, sub, [chat_item(sandbox, sub, forged)]) == 202
        await wait_for(lambda: runtime.intake.counters.get("dropped_not_in_graph", 0) == 1)
        second = await post_dm(sandbox, sponsor, agent, "genuine second")
        await wait_for(lambda: handled(runtime, second["message_id"]))
    assert [r["text"] for r in runs(tmp_path)][::2] == ["genuine first", "genuine second"]
    assert all("forged" not in r["text"] for r in runs(tmp_path))


async def test_an_edit_or_delete_does_not_run_the_handler_again(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    """An edit corrects a message already answered and a deletion has no text: the handler would
    answer twice. Both stay in the inbox as events; the bot runs nothing for them."""
    sponsor, agent = upn(sandbox, "sponsor"), upn(sandbox, "agent_user")
    async with bot_in_process(env, handler) as (runtime, bot):
        first = await post_dm(sandbox, sponsor, agent, "first")
        await wait_agent_messages(sandbox, first["chat_id"], 1)
        base = f"/_sandbox/messages/{first['chat_id']}/{first['message_id']}"
        await control(sandbox, "POST", f"{base}/edit", {"text": "first, edited"})
        await wait_for(lambda: runtime.inbox.count("teams_edit") == 1)
        await control(sandbox, "POST", f"{base}/delete", {"from": sponsor})
        await wait_for(lambda: runtime.inbox.count("teams_delete") == 1)
        await post_dm(sandbox, sponsor, agent, "second")  # handled after the changes: the sync point
        replies = await wait_agent_messages(sandbox, first["chat_id"], 2)
        assert runtime.inbox.unread_summary()["unread"] == 2  # the edit and the deletion, left for the agent
    assert [r["text"] for r in replies] == ["echo: first", "echo: second"]
    assert [r["text"] for r in runs(tmp_path) if r["phase"] == "start"] == ["first", "second"]
    assert bot.handled == 2


# --- group chats (AGENTSEAT_GROUP_POLICY) ---------------------------------------------------------------------
async def test_in_a_group_chat_the_bot_answers_only_when_mentioned(
        sandbox: Sandbox, env: dict[str, str], handler: str, tmp_path: Path) -> None:
    chat_id = await group_chat(sandbox, GRACE, ALAN)
    async with bot_in_process(env, handler, GRACE) as (runtime, _):
        overheard = await say(sandbox, GRACE, chat_id, "lunch, Alan?")
        asked = await say(sandbox, GRACE, chat_id, f"@{AGENT} what is the status?", mentions=[AGENT])
        [reply] = await wait_agent_messages(sandbox, chat_id, 1)
        await wait_for(lambda: handled(runtime, overheard))
    assert reply["text"].startswith("echo:") and "what is the status?" in reply["text"]
    assert [r["message_id"] for r in runs(tmp_path) if r["phase"] == "start"] == [asked]
    with Inbox(Path(env["AGENTSEAT_STATE_DIR"]) / "inbox.db") as inbox:  # both stored
        assert [e.message_id for e in inbox.read(0)] == [overheard, asked]
