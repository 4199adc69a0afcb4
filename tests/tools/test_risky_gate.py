"""Risky tools run only when a sponsor just asked in that chat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentseat.runtime.inbox import Event
from agentseat.tools.teams import RISKY_WINDOW, sponsor_request_refusal

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHAT = "19:group@thread.v2"


def _event(trust: str = "sponsor", age: timedelta = timedelta(minutes=1), chat_id: str = CHAT) -> Event:
    return Event.teams(chat_id=chat_id, message_id="1", sender_id="u", sender_upn="", sender_name="Someone",
                       trust=trust, text="please add alan", created_at=(NOW - age).isoformat(),  # type: ignore[arg-type]
                       source="webhook")


def test_recent_sponsor_request_in_the_chat_allows() -> None:
    assert sponsor_request_refusal(_event(), CHAT, NOW) is None


@pytest.mark.parametrize(("last", "reason"), [
    (None, "no recent message from a sponsor"),
    (_event(trust="colleague"), "not a sponsor"),
    (_event(trust="external"), "not a sponsor"),
    (_event(age=RISKY_WINDOW + timedelta(seconds=1)), "older than 10 minutes"),
    (_event(age=-timedelta(minutes=30)), "in the future"),
    (_event(chat_id="19:other@thread.v2"), "no recent message from a sponsor"),
])
def test_anything_else_is_refused_with_a_reason(last: Event | None, reason: str) -> None:
    refusal = sponsor_request_refusal(last, CHAT, NOW)
    assert refusal is not None and reason in refusal
