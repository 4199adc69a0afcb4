"""The intake's routing rules, with a real inbox and intake.db and a stand-in for the Graph GET.

The GET itself, against the sandbox over loopback, is covered by tests/runtime/test_trust.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentseat.errors import GraphError, InboxError
from agentseat.runtime.inbox import Event, Inbox
from agentseat.runtime.intake import Decision, Intake
from agentseat.runtime.intake_store import PendingStore
from agentseat.runtime.normalize import TrustPolicy
from tests.runtime.test_runtime import wait_for

SPONSOR, COLLEAGUE, AGENT = "5b0d5f3e-sponsor", "c011ea90-colleague", "aaaaaaaa-agent"
CHAT = "19:chat@unq.gbl.spaces"


def claim(message_id: str, sender: str = SPONSOR, text: str = "from the notification", *,
          confirmed: bool = False) -> Event:
    return Event.teams(chat_id=CHAT, message_id=message_id, sender_id=sender, sender_upn="", sender_name="",
                       trust="sponsor" if sender == SPONSOR else "colleague", text=text,
                       created_at="2026-12-06T03:00:00Z", source="webhook", confirmed=confirmed)


def graph_message(message_id: str, sender: str = SPONSOR, text: str = "as Graph has it") -> dict[str, Any]:
    return {"id": message_id, "chatId": CHAT, "messageType": "message", "createdDateTime": "2026-12-06T03:00:01Z",
            "from": {"user": {"id": sender, "displayName": "Someone"}}, "body": {"contentType": "text", "content": text}}


class Graph:
    """What Graph holds; each read is counted. `failing` makes reads raise a transient error."""

    def __init__(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.reads = 0
        self.failing = False

    async def read(self, chat_id: str, message_id: str) -> dict[str, Any] | None:
        self.reads += 1
        if self.failing:
            raise GraphError("Graph is unavailable", status=503)
        return self.messages.get(message_id)


class Gate:
    """A gate with fixed decisions by sender; records what it holds."""

    def __init__(self, decisions: dict[str, Decision]) -> None:
        self.decisions = decisions
        self.held: list[Event] = []

    def decide(self, event: Event) -> Decision:
        return self.decisions.get(event.sender_id, "open")

    async def hold(self, event: Event) -> None:
        self.held.append(event)


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    with Inbox(tmp_path / "inbox.db", own_ids={AGENT}) as box:
        yield box


def make_intake(inbox: Inbox, tmp_path: Path, graph: Graph, **options: Any) -> Intake:
    policy = TrustPolicy(tenant_id="t", sponsor_ids={SPONSOR}, own_ids={AGENT})
    return Intake(inbox, tmp_path / "intake.db", policy=policy, reader=graph.read, retry_seconds=0, **options)


async def test_an_unconfirmed_sponsor_event_is_never_appended_whatever_the_gate_says(
    inbox: Inbox, tmp_path: Path
) -> None:
    intake = make_intake(inbox, tmp_path, Graph(), gate=Gate({SPONSOR: "open"}))
    assert await intake.admit([claim("1")]) == []
    assert intake.counters["pending"] == 1
    assert await intake.release([claim("2")]) == []
    assert intake.counters["refused_unconfirmed_sponsor"] == 1 and inbox.count() == 0
    assert stat.S_IMODE(os.stat(tmp_path / "intake.db").st_mode) == 0o600


async def test_confirmation_stores_graphs_version_and_drops_what_graph_lacks_or_attributes_elsewhere(
    inbox: Inbox, tmp_path: Path
) -> None:
    graph = Graph()
    graph.messages = {"1": graph_message("1"), "3": graph_message("3", sender=COLLEAGUE)}
    intake = make_intake(inbox, tmp_path, graph)
    await intake.admit([claim("1"), claim("2"), claim("3")])
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await wait_for(lambda: intake.counters["pending"] == 0)
        tg.cancel_scope.cancel()
    [event] = inbox.read(0)
    assert (event.message_id, event.text, event.confirmed, event.trust) == ("1", "as Graph has it", True, "sponsor")
    assert event.created_at == "2026-12-06T03:00:01Z"
    assert (intake.counters["dropped_not_in_graph"], intake.counters["dropped_sender_mismatch"]) == (1, 1)
    assert graph.reads == 3
    # A replay of the stored message's notification costs no second read.
    assert await intake.admit([claim("1")]) == [] and intake.counters["pending"] == 0


async def test_unconfirmed_open_events_are_stored_from_the_notification_as_untrusted(
    inbox: Inbox, tmp_path: Path
) -> None:
    graph = Graph()
    intake = make_intake(inbox, tmp_path, graph)
    [event] = await intake.admit([claim("1", sender=COLLEAGUE)])
    assert (event.trust, event.confirmed, event.text) == ("colleague", False, "from the notification")
    assert graph.reads == 0 and intake.counters["pending"] == 0


async def test_interceptors_see_confirmed_allowed_events_in_order_and_consume_some(
    inbox: Inbox, tmp_path: Path
) -> None:
    intake = make_intake(inbox, tmp_path, Graph())
    seen: list[str] = []

    async def relay(event: Event) -> bool:
        seen.append(event.message_id)
        return event.text.startswith("yes ")

    intake.intercept(relay)
    stored = await intake.admit([claim("1", text="hello", confirmed=True), claim("2", text="yes abcde", confirmed=True),
                                 claim("3", sender=COLLEAGUE, text="yes abcde", confirmed=True)])
    assert seen == ["1", "2"]  # a colleague (open) never reaches an interceptor
    assert [e.message_id for e in stored] == ["1", "3"]
    assert intake.counters["intercepted"] == 1
    # Consumed once: the same message read again by the poller is not offered again.
    assert await intake.admit([claim("2", text="yes abcde", confirmed=True)]) == [] and seen == ["1", "2"]


async def test_held_senders_are_confirmed_first_then_handed_to_the_gate_and_released_in_order(
    inbox: Inbox, tmp_path: Path
) -> None:
    graph = Graph()
    graph.messages = {"1": graph_message("1", sender=COLLEAGUE, text="graph text")}
    gate = Gate({COLLEAGUE: "hold"})
    intake = make_intake(inbox, tmp_path, graph, gate=gate)
    assert await intake.admit([claim("1", sender=COLLEAGUE)]) == []
    assert gate.held == [] and intake.counters["pending"] == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await wait_for(lambda: len(gate.held) == 1)
        tg.cancel_scope.cancel()
    assert (gate.held[0].text, gate.held[0].confirmed) == ("graph text", True) and inbox.count() == 0
    released = await intake.release([*gate.held, claim("2", sender=COLLEAGUE, text="second", confirmed=True)])
    assert [e.message_id for e in released] == ["1", "2"] and intake.counters["released"] == 2


async def test_a_full_confirmation_queue_drops_with_a_reason_and_asks_for_one_resync(
    inbox: Inbox, tmp_path: Path
) -> None:
    resyncs: list[tuple[str, str]] = []
    intake = make_intake(inbox, tmp_path, Graph(), max_pending=2,
                         on_overflow=lambda kind, reason: resyncs.append((kind, reason)))
    await intake.admit([claim(str(i)) for i in range(5)])
    assert (intake.counters["pending"], intake.counters["dropped_confirm_queue_full"]) == (2, 3)
    assert resyncs == [("teams", "confirm_queue_full")]


async def test_pending_events_survive_the_process_and_the_next_one_confirms_them(
    inbox: Inbox, tmp_path: Path
) -> None:
    graph = Graph()
    graph.messages = {"1": graph_message("1")}
    first = make_intake(inbox, tmp_path, graph)
    await first.admit([claim("1")])
    first.close()  # nothing confirmed it: the process died after answering 202
    second = make_intake(inbox, tmp_path, graph)
    assert second.counters["pending"] == 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(second.run)
        await wait_for(lambda: second.counters["pending"] == 0)  # the row goes after the append
        tg.cancel_scope.cancel()
    assert inbox.count() == 1
    assert second.counters == {**second.counters, "pending": 0, "confirmed": 1, "stored": 1}


async def test_graph_errors_are_retried_then_dropped_with_a_resync(inbox: Inbox, tmp_path: Path) -> None:
    graph = Graph()
    graph.failing = True
    resyncs: list[tuple[str, str]] = []
    intake = make_intake(inbox, tmp_path, graph, max_attempts=3,
                         on_overflow=lambda kind, reason: resyncs.append((kind, reason)))
    await intake.admit([claim("1")])
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await wait_for(lambda: intake.counters["pending"] == 0)
        tg.cancel_scope.cancel()
    assert graph.reads == 3 and intake.counters["dropped_confirm_failed"] == 1
    assert resyncs == [("teams", "confirm_failed")] and inbox.count() == 0


async def test_a_failing_interceptor_loses_nothing(inbox: Inbox, tmp_path: Path) -> None:
    intake = make_intake(inbox, tmp_path, Graph())

    async def broken(event: Event) -> bool:
        raise RuntimeError("a bug in a hook")

    intake.intercept(broken)
    [event] = await intake.admit([claim("1", confirmed=True)])
    assert event.message_id == "1" and intake.counters["interceptor_errors"] == 1


async def test_a_message_stored_by_an_earlier_process_is_not_routed_again(inbox: Inbox, tmp_path: Path) -> None:
    """A restart forgets what the intake saw; a poll re-reading a stored message must not
    reach the interceptors (a second permission answer) or the gate (a second pairing code)."""
    graph = Graph()
    first = make_intake(inbox, tmp_path, graph, gate=Gate({SPONSOR: "allow"}))
    assert len(await first.admit([claim("m-1", confirmed=True)])) == 1
    first.close()

    gate = Gate({SPONSOR: "allow"})
    seen: list[str] = []

    async def interceptor(event: Event) -> bool:
        seen.append(event.key)
        return False

    again = make_intake(inbox, tmp_path, graph, gate=gate)
    again.intercept(interceptor)
    gate.decisions[SPONSOR] = "hold"  # were it routed again, the gate would hold it
    assert await again.admit([claim("m-1", confirmed=True), claim("m-2", confirmed=True)]) == []
    assert seen == [] and [e.message_id for e in gate.held] == ["m-2"]
    again.close()


async def test_the_pipelines_worker_half_routes_as_admit_does(inbox: Inbox, tmp_path: Path) -> None:
    """`write` (in a worker thread, as the notification pipeline calls it) then `settle` (on the loop)."""
    overflow: list[tuple[str, str]] = []
    intake = make_intake(inbox, tmp_path, Graph(), max_pending=1, on_overflow=lambda *a: overflow.append(a))
    [before] = await intake.admit([claim("0", sender=COLLEAGUE)])
    events = [claim("0", sender=COLLEAGUE), claim("1", sender=COLLEAGUE), claim("2"), claim("3"),
              claim("4", sender=COLLEAGUE, confirmed=True)]
    written = await anyio.to_thread.run_sync(intake.write, events)
    # The worker's writes are durable before `settle` runs: "1" stored, sponsor "2" pending in intake.db.
    assert [e.message_id for e in inbox.read(0)] == ["0", "1"]
    assert [e.message_id for _, _, e in PendingStore(tmp_path / "intake.db").oldest()] == ["2"]
    stored = await intake.settle(events, written)
    assert [e.message_id for e in stored] == ["1", "4"]  # the confirmed one through `admit`
    assert (intake.counters["already_stored"], intake.counters["pending"], intake.counters["stored"]) == (1, 1, 3)
    assert intake.counters["dropped_confirm_queue_full"] == 1 and ("teams", "confirm_queue_full") in overflow
    assert before.seq < stored[0].seq and inbox.count() == 3


class FullDisk(Inbox):
    def insert(self, events: Any) -> tuple[list[Event], list[str]]:
        raise InboxError("inbox append failed: the disk is full", hint="free space")


async def test_a_failed_append_in_the_worker_is_raised_by_settle_with_the_pending_row_counted(tmp_path: Path) -> None:
    with FullDisk(tmp_path / "inbox.db", own_ids={AGENT}) as box:
        intake = make_intake(box, tmp_path, Graph())
        events = [claim("1", sender=COLLEAGUE), claim("2")]
        written = await anyio.to_thread.run_sync(intake.write, events)
        with pytest.raises(InboxError):
            await intake.settle(events, written)
        # The sponsor's claim was kept before the append failed: its confirmation still runs.
        assert intake.counters["pending"] == 1 and intake.counters["stored"] == 0
