"""The clock on an injected time: due promises become one `reminder` each, late ones say so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from agentseat.clock import Clock, poke
from agentseat.errors import ToolInputError
from agentseat.promises import Promises, parse_due
from agentseat.runtime.inbox import Inbox
from agentseat.tools.channel import envelope

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


class FakeTime:
    def __init__(self, start: datetime) -> None:
        self.at = start

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def stores(tmp_path: Path):  # noqa: ANN201
    inbox, promises = Inbox(tmp_path / "inbox.db"), Promises(tmp_path / "promises.db")
    yield inbox, promises
    inbox.close()
    promises.close()


async def test_a_due_promise_becomes_one_reminder(stores: tuple[Inbox, Promises]) -> None:
    inbox, promises = stores
    now = FakeTime(T0)
    clock = Clock(promises, inbox, now=now)
    promise = promises.add("19:chat@thread.v2", "send Ada the report", parse_due("in 2 hours", "UTC", T0), now=T0)
    assert await clock.tick() == T0 + timedelta(hours=2)  # nothing due yet: sleeps until then
    assert inbox.count() == 0 and promises.get_meta("next_due") == (T0 + timedelta(hours=2)).isoformat()
    now.at = T0 + timedelta(hours=2)
    assert await clock.tick() is None
    [event] = inbox.read(0)
    assert (event.kind, event.chat_id, event.message_id, event.text) == (
        "reminder", "19:chat@thread.v2", promise.id, "send Ada the report")
    assert event.key == f"reminder:{promise.id}:{promise.due}"
    await clock.tick()  # ticking again raises nothing more
    assert inbox.count() == 1 and promises.get(promise.id).fired_at is not None  # type: ignore[union-attr]
    # Raised twice (a crash between storing it and marking the promise): the key makes it one event.
    assert inbox.append([event]) == []


async def test_one_missed_while_down_fires_once_saying_how_late(stores: tuple[Inbox, Promises]) -> None:
    inbox, promises = stores
    promises.add("19:chat@thread.v2", "call back", T0 + timedelta(minutes=5), now=T0)
    resolved = promises.add("19:chat@thread.v2", "already done", T0 + timedelta(minutes=1), now=T0)
    promises.resolve(resolved.id, "done early")
    later = FakeTime(T0 + timedelta(hours=3))  # the clock jumped (or nothing ran) for 3 hours
    await Clock(promises, inbox, now=later).tick()
    [event] = inbox.read(0)
    push = envelope(event)
    assert "2.9 h late" in push["content"] and push["meta"]["kind"] == "reminder"
    assert push["meta"]["chat_id"] == "19:chat@thread.v2" and "call back" in push["content"]


async def test_a_poke_wakes_the_owner_clock_at_once(stores: tuple[Inbox, Promises]) -> None:
    inbox, promises = stores
    now = FakeTime(T0)
    clock = Clock(promises, inbox, now=now, recheck=3600)
    async with anyio.create_task_group() as tg:
        await tg.start(clock.run)
        woke = clock.wakeups
        promises.add("19:c@thread.v2", "ping", T0 - timedelta(seconds=1), now=T0)
        assert poke(promises)  # another process's add_promise: one datagram
        with anyio.fail_after(10):
            while inbox.count() == 0:
                await anyio.sleep(0.01)
        assert clock.wakeups == woke + 1  # woken by the poke, not by a timer
        tg.cancel_scope.cancel()
    assert promises.get_meta("clock_port") is None  # no owner: nothing to poke


def test_due_phrases_in_the_sponsor_time_zone() -> None:
    now = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert parse_due("in 2 hours", "Europe/Berlin", now) == now + timedelta(hours=2)
    assert parse_due("in 1 day 2 h", "UTC", now) == now + timedelta(days=1, hours=2)
    assert parse_due("tomorrow 9:00", "Europe/Berlin", now) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert parse_due("tomorrow", "America/New_York", now) == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    assert parse_due("friday at 2:30pm", "UTC", now) == datetime(2026, 3, 6, 14, 30, tzinfo=UTC)
    assert parse_due("2026-03-04T10:00", "Europe/Berlin", now) == datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    assert parse_due("2026-03-04T10:00Z", "Europe/Berlin", now) == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    for bad in ("soonish", "in 3 fortnights", "25:00"):
        with pytest.raises(ToolInputError):
            parse_due(bad, "UTC", now)


async def test_after_a_clock_jump_the_clock_looks_again_without_a_poke(stores: tuple[Inbox, Promises]) -> None:
    inbox, promises = stores
    now = FakeTime(T0)
    promises.add("19:c@thread.v2", "in an hour", T0 + timedelta(hours=1), now=T0)
    clock = Clock(promises, inbox, now=now, recheck=0.05)  # RECHECK, shrunk: the jump is seen at the next look
    async with anyio.create_task_group() as tg:
        await tg.start(clock.run)
        assert inbox.count() == 0
        now.at = T0 + timedelta(hours=2)  # the wall clock jumped (or the machine slept) two hours
        with anyio.fail_after(10):
            while inbox.count() == 0:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    [event] = inbox.read(0)
    assert event.kind == "reminder" and "1.0 h late" in envelope(event)["content"]


def test_status_lists_what_is_scheduled_next(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentseat.cli import main

    promises = Promises(tmp_path / "promises.db")
    promise = promises.add("19:c@thread.v2", "call back", T0 + timedelta(days=400), now=T0)
    promises.set_meta("next_due", promise.due)
    promises.close()
    (tmp_path / "inbox.db").touch()
    Inbox(tmp_path / "inbox.db").close()
    assert main(["--state-dir", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out
    assert f"scheduled:      next due {promise.due}" in out
    assert f"promise:        {promise.id} due {promise.due} in 19:c@thread.v2" in out
