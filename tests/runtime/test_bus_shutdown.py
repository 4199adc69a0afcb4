"""A sink stopped cleanly (Ctrl-C) replays nothing it already handled.

Found by the soak (bench/soak.py): after a graceful stop of `agentseat watch`
the next process printed the last event again, as after a kill -9. The stop's
cancellation reached `follow` between the consumer handling an event and the
cursor write, so the write never ran.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from agentseat.runtime.bus import follow
from agentseat.runtime.inbox import Event, Inbox


def _event(n: int) -> Event:
    return Event.teams(chat_id="c", message_id=str(n), sender_id="u", sender_upn="", sender_name="",
                       trust="colleague", text=f"m{n}", created_at="2026-02-02T17:56:05+00:00", source="webhook")


async def test_shutdown_after_an_event_was_handled_keeps_its_cursor(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.db") as inbox:
        first, _second = inbox.append([_event(1), _event(2)])
        handled: list[str] = []
        with anyio.CancelScope() as scope:
            async for event in follow(inbox, "watch", from_start=True):
                handled.append(event.text)
                scope.cancel()  # the stop arrives while this event is in hand
        assert handled == ["m1"]  # the stop is honoured before the next event
        assert inbox.cursor("watch") == first.seq  # and the handled one is not replayed

        restarted = [event.text async for event in _take(follow(inbox, "watch"), 1)]
        assert restarted == ["m2"]


async def _take(events, n: int):  # noqa: ANN001, ANN202 - a tiny async slice
    async for event in events:
        yield event
        n -= 1
        if n == 0:
            return


async def test_a_sink_first_started_on_an_empty_inbox_gets_what_arrived_while_it_was_down(tmp_path) -> None:  # noqa: ANN001
    import anyio

    from agentseat.runtime.bus import follow
    from agentseat.runtime.inbox import Event, Inbox

    def event(i: int) -> Event:
        return Event.teams(chat_id="c", message_id=str(i), sender_id="u", sender_upn="", sender_name="",
                           trust="colleague", text=f"t{i}", created_at="2026-01-01T00:00:00Z", source="poll")

    with Inbox(tmp_path / "inbox.db") as inbox:
        with anyio.move_on_after(0.2):  # first start on an empty inbox, nothing handled
            async for _ in follow(inbox, "s"):
                pass
        inbox.append([event(1)])  # arrives while the sink is down
        got = []
        with anyio.fail_after(10):
            async for e in follow(inbox, "s"):
                got.append(e.text)
                break
        assert got == ["t1"]
