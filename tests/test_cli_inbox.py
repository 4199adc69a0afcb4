"""`agentseat inbox` and the unread line of `agentseat status`, run in-process on a state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentseat.cli import main
from agentseat.runtime.inbox import Event, Inbox

WHEN = "2026-01-01T00:00:00+00:00"


def run(state: Path, *argv: str) -> int:
    return main(["--state-dir", str(state), *argv])


def _fill(state: Path) -> list[Event]:
    with Inbox(state / "inbox.db") as inbox:
        stored = inbox.append([
            Event.teams(chat_id="19:a", message_id="t1", sender_id="u1", sender_upn="ada@contoso.test",
                        sender_name="Ada", trust="sponsor", text="already handled", created_at=WHEN,
                        source="poll", confirmed=True),
            Event.teams(chat_id="19:b", message_id="t2", sender_id="u2", sender_upn="grace@contoso.test",
                        sender_name="Grace", trust="colleague", created_at=WHEN, source="webhook",
                        text="please\nlook \x1b[31mat\u202e this " + "long " * 40),
            Event.mail(message_id="m1", sender_id="u3", sender_upn="alan@contoso.test", sender_name="Alan",
                       trust="colleague", text="the body", subject="Quarterly", created_at=WHEN, source="poll",
                       confirmed=True),
        ])
        inbox.mark_read(seqs=[stored[0].seq])
    return stored


def test_inbox_lists_unread_events_one_line_each_and_marks_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _fill(state)
    assert run(state, "inbox") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("unread: 2 (oldest #2, received ")
    [grace, alan] = [line for line in lines if line.startswith("#")]
    assert grace.startswith("#2     teams ") and "grace@contoso.test (colleague?)" in grace
    assert "please look [31mat this long" in grace and grace.endswith("…")
    assert "\x1b" not in grace and "\u202e" not in grace and "\n" not in grace
    assert 70 < len(grace.split("(colleague?)  ", 1)[1]) <= 80
    assert alan.startswith("#3     mail ") and "alan@contoso.test (colleague)" in alan and "Quarterly: the body" in alan
    assert "already handled" not in "\n".join(lines)
    assert lines[-1].startswith("trust marked ?")  # the unconfirmed sender is flagged
    with Inbox(state / "inbox.db") as inbox:  # listing is not the agent acting
        assert inbox.unread_summary()["unread"] == 2


def test_inbox_all_lists_the_newest_events_read_or_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _fill(state)
    assert run(state, "inbox", "--all") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert [row.split()[0] for row in rows] == ["#1", "#2", "#3"]
    assert " read   ada@contoso.test (sponsor)  already handled" in rows[0] and " unread " in rows[1]
    assert run(state, "inbox", "--all", "--limit", "2") == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert [row.split()[0] for row in rows] == ["#2", "#3"]
    assert run(state, "inbox", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "… and 1 more unread" in out


def test_inbox_json_is_machine_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    stored = _fill(state)
    assert run(state, "inbox", "--json") == 0
    out = capsys.readouterr().out
    assert out.isascii()  # no raw control or bidi character reaches a terminal
    listing = json.loads(out)
    assert listing["unread"]["unread"] == 2 and listing["unread"]["oldest_unread_seq"] == 2
    assert isinstance(listing["unread"]["oldest_unread_age_seconds"], int)
    assert [e["message_id"] for e in listing["events"]] == ["t2", "m1"]
    assert listing["events"][0]["text"] == stored[1].text and listing["events"][0]["read_at"] is None
    assert listing["events"][1]["from"] == {"name": "Alan", "upn": "alan@contoso.test", "id": "u3"}
    assert run(state, "inbox", "--all", "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert [e["read_at"] is None for e in listing["events"]] == [False, True, True]


def test_inbox_of_an_empty_state_dir_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "nothing", "inbox") == 0
    assert capsys.readouterr().out.splitlines() == ["unread: none", "nothing unread"]
    assert not (tmp_path / "nothing" / "inbox.db").exists()


def test_inbox_refuses_a_limit_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(tmp_path, "inbox", "--limit", "0")
    assert "must be 1 or more" in capsys.readouterr().err


def test_status_shows_the_unread_count_and_the_oldest_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    _fill(state)
    assert run(state, "status") == 0
    out = capsys.readouterr().out
    assert "unread:         2 (oldest #2, received " in out and " ago); list them with `agentseat inbox`" in out
    assert "please" not in out and "the body" not in out  # status never prints a message's text
    with Inbox(state / "inbox.db") as inbox:
        inbox.take_unread(10)
    assert run(state, "status") == 0
    assert "unread:         none\n" in capsys.readouterr().out
