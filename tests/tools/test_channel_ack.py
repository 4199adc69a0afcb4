"""The channel sink acknowledges a pushed batch inside its next claim: one commit a batch, and
still at least once across a crash (an unacknowledged batch is pushed again, never lost)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import structlog

from agentseat.runtime.inbox import Event, Inbox
from agentseat.tools.channel import GROUP, ChannelSink

CHILD = str(Path(__file__).with_name("_channel_child.py"))


def _teams(message_id: str) -> Event:
    return Event.teams(chat_id="19:abc@unq.gbl.spaces", message_id=message_id, sender_id="u1",
                       sender_upn="grace@contoso.test", sender_name="Grace", trust="colleague", text="hello",
                       created_at="2026-11-27T10:00:00.000Z", source="webhook")


def _open_claims(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT seq FROM claims WHERE grp = ? AND done = 0 ORDER BY seq", (GROUP,))]


class RecordingInbox(Inbox):
    """A real inbox that records how the sink acknowledges."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acks: list[list[int]] = []  # separate ack() transactions
        self.claims: list[list[int]] = []  # the seqs each claim acknowledged

    def ack(self, group: str, seqs: Any) -> None:
        self.acks.append(list(seqs))
        super().ack(group, seqs)

    def _claim_in(self, conn: Any, group: str, claimant: str, limit: int, alive: Any, ack: Any) -> list[Event]:
        # Both claim paths (on the loop, in a worker thread) run this inside their transaction.
        self.claims.append(list(ack))
        return super()._claim_in(conn, group, claimant, limit, alive, ack)


async def _push_until(inbox: Inbox, sink: ChannelSink, want: int) -> list[str]:
    """Run `sink` until it has pushed `want` events, then stop it as a shutdown does."""
    received: list[str] = []

    async def push(params: dict[str, Any]) -> None:
        received.append(params["meta"]["message_id"])

    sink.attach(push)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink, SimpleNamespace(inbox=inbox))
        with anyio.fail_after(30):
            while len(received) < want:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)  # room for a wrong extra push to show
        tg.cancel_scope.cancel()
    return received


async def test_a_batch_is_acknowledged_by_the_next_claim_in_the_same_transaction(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    with RecordingInbox(path) as inbox:
        sink = ChannelSink(batch=3, claimant="sink-a")
        await sink.prepare(inbox)
        stored = inbox.append([_teams(str(n)) for n in range(7)])
        received = await _push_until(inbox, sink, 7)
        assert received == [str(n) for n in range(7)]
        seqs = [e.seq for e in stored]
        # Batches of 3, 3, 1: each acknowledged by the claim after it, none by an ack() of its own
        # while the sink ran (the last one by the empty claim that found nothing more).
        assert inbox.claims[:4] == [[], seqs[0:3], seqs[3:6], seqs[6:7]]
        assert all(not ack for ack in inbox.acks)
        assert _open_claims(path) == []
    # A clean stop left nothing to take over: the next sink pushes only what is new.
    with Inbox(path) as inbox:
        inbox.append([_teams("new")])
        assert await _push_until(inbox, ChannelSink(batch=3, claimant="sink-b"), 1) == ["new"]


async def test_a_crash_after_the_pushes_and_before_the_acknowledging_claim_pushes_the_batch_again(
    tmp_path: Path
) -> None:
    path = tmp_path / "inbox.db"
    with Inbox(path) as inbox:
        await ChannelSink().prepare(inbox)
        inbox.append([_teams(str(n)) for n in range(5)])
    proc = subprocess.Popen([sys.executable, CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert out.split() == ["0", "1", "2"]  # the first batch was pushed, then the process died
    assert _open_claims(path) == [1, 2, 3]  # ... before it was acknowledged
    with Inbox(path) as inbox:
        received = await _push_until(inbox, ChannelSink(batch=3, claimant="restarted"), 5)
    # Taken over from the dead claimant and pushed again (the host dedupes), then the rest: none lost.
    assert received == ["0", "1", "2", "3", "4"]
    assert _open_claims(path) == []


async def test_one_log_line_per_batch_with_counts_by_outcome_and_no_text(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.db") as inbox:
        sink = ChannelSink(batch=5, claimant="sink-a")  # group policy "mention": an unmentioned group line is kept
        await sink.prepare(inbox)
        group = Event.teams(chat_id="19:group@thread.v2", message_id="g", sender_id="u2", sender_upn="", sender_name="",
                            trust="colleague", text="overheard", created_at="2026-11-27T10:00:00.000Z",
                            source="webhook", chat_type="group", mentioned=False)
        stored = inbox.append([_teams("0"), _teams("1"), group, _teams("3")])
        with structlog.testing.capture_logs() as logs:
            assert await _push_until(inbox, sink, 3) == ["0", "1", "3"]
    lines = [e for e in logs if e["event"] == "channel_pushed"]
    assert len(lines) == 1  # not one per event
    [line] = lines
    assert (line["count"], line["skipped"], line["failed"]) == (3, 1, 0)
    assert (line["seq"], line["last_seq"]) == (stored[0].seq, stored[3].seq)
    assert "hello" not in repr(logs) and "overheard" not in repr(logs)


class ThreadClaimCounter(Inbox):
    """A real inbox that counts the claims made through a worker thread (`claim_next`)."""

    thread_claims = 0

    def claim_next(self, *args: Any, **kwargs: Any) -> list[Event]:
        self.thread_claims += 1
        return super().claim_next(*args, **kwargs)


async def test_an_uncontended_sink_claims_on_the_loop_without_a_worker_thread(tmp_path: Path) -> None:
    with ThreadClaimCounter(tmp_path / "inbox.db") as inbox:
        sink = ChannelSink(batch=3, claimant="sink-a")
        await sink.prepare(inbox)
        inbox.append([_teams(str(n)) for n in range(7)])
        assert await _push_until(inbox, sink, 7) == [str(n) for n in range(7)]
        assert inbox.thread_claims == 0


async def test_a_sink_that_finds_the_inbox_locked_claims_in_a_worker_thread_instead(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    received: list[str] = []
    with ThreadClaimCounter(path, busy_timeout=30.0) as inbox:
        sink = ChannelSink(batch=3, claimant="sink-a")
        await sink.prepare(inbox)
        inbox.append([_teams(str(n)) for n in range(4)])
        async with anyio.create_task_group() as tg:

            async def release_soon() -> None:
                await anyio.sleep(0.3)
                other.execute("ROLLBACK")

            async def push(params: dict[str, Any]) -> None:
                received.append(params["meta"]["message_id"])
                if len(received) == 3:  # another process starts a write before the next claim
                    other.execute("BEGIN IMMEDIATE")
                    tg.start_soon(release_soon)

            sink.attach(push)
            tg.start_soon(sink, SimpleNamespace(inbox=inbox))
            with anyio.fail_after(30):
                while len(received) < 4:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    other.close()
    assert received == ["0", "1", "2", "3"]
    assert inbox.thread_claims == 1  # the locked claim waited in a worker thread, not on the loop
