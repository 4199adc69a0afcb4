"""Group chats: the chat type and the agent's @mention on each Event, kept by the inbox (also one
written by schema 2), and the push decision of AGENTSEAT_GROUP_POLICY."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentseat.runtime.group_policy import pushes
from agentseat.runtime.inbox import Event, Inbox
from agentseat.runtime.normalize import TrustPolicy, chat_message_event, chat_type_of

AGENT = "a6b1c2d3-0000-4000-8000-000000000001"
GROUP = "19:0a1b2c3d4e5f@thread.v2"
_NOW = "2026-12-06T10:00:00+00:00"
POLICY = TrustPolicy(sponsor_ids={"sponsor-id"}, own_ids={AGENT, "agent@contoso.test"})


def message(chat_id: str, sender: str = "grace-id", mentions: Any = None) -> dict[str, Any]:
    return {"id": "1700000000000", "messageType": "message", "chatId": chat_id, "createdDateTime": _NOW,
            "from": {"user": {"id": sender, "displayName": "Someone"}},
            "body": {"contentType": "html", "content": '<at id="0">agentseat agent</at> hi'},
            "mentions": mentions if mentions is not None else []}


def mention_of(user_id: Any) -> dict[str, Any]:
    return {"id": 0, "mentionText": "x", "mentioned": {"user": {"id": user_id, "userIdentityType": "aadUser"}}}


@pytest.mark.parametrize(("chat_id", "expected"), [
    ("19:aaa_bbb@unq.gbl.spaces", "oneOnOne"), (GROUP, "group"),
    ("19:meeting_MjdhNjM4YzU@thread.v2", "meeting"), ("something-else", "")])
def test_chat_type_follows_the_documented_id_shapes(chat_id: str, expected: str) -> None:
    assert chat_type_of(chat_id) == expected


def test_only_a_mention_of_the_agent_counts() -> None:
    def mentioned(mentions: Any) -> bool:
        event = chat_message_event(message(GROUP, mentions=mentions), POLICY, source="poll", confirmed=True)
        assert event is not None and event.chat_type == "group"
        return event.mentioned

    assert mentioned([mention_of(AGENT)]) is True
    assert mentioned([mention_of(AGENT.upper())]) is True  # object ids compare case-insensitively
    assert mentioned([mention_of("grace-id")]) is False
    assert mentioned([]) is False
    # Odd shapes from a forged or broken notification name nobody.
    assert mentioned([{"id": 0, "mentioned": None}, "x", mention_of(7)]) is False
    assert mentioned({"not": "a list"}) is False


def _event(chat_id: str, *, trust: str = "colleague", mentioned: bool = False, kind: str = "teams") -> Event:
    if kind == "mail":
        return Event.mail(message_id="m", sender_id="", sender_upn="x@y.z", sender_name="X", trust="colleague",
                          text="t", subject="s", created_at=_NOW, source="poll")
    return Event.teams(chat_id=chat_id, message_id="m", sender_id="s", sender_upn="", sender_name="S",
                       trust=trust, text="t", created_at=_NOW, source="poll",  # type: ignore[arg-type]
                       chat_type=chat_type_of(chat_id), mentioned=mentioned)


def test_group_policy_mention_pushes_mentions_sponsors_and_everything_outside_groups() -> None:
    assert not pushes(_event(GROUP), "mention")
    assert pushes(_event(GROUP, mentioned=True), "mention")
    assert pushes(_event(GROUP, trust="sponsor"), "mention")
    assert not pushes(_event("19:meeting_x@thread.v2"), "mention")
    assert pushes(_event("19:a_b@unq.gbl.spaces"), "mention")
    assert pushes(_event("unknown-shape"), "mention")  # unknown: pushed, never lost
    assert pushes(_event("", kind="mail"), "mention")
    assert pushes(_event(GROUP), "all")


def test_event_refuses_an_unknown_chat_type() -> None:
    with pytest.raises(Exception, match="chat_type"):
        Event.teams(chat_id=GROUP, message_id="m", sender_id="s", sender_upn="", sender_name="S", trust="colleague",
                    text="t", created_at=_NOW, source="poll", chat_type="channel")


def test_inbox_keeps_chat_type_and_mention(tmp_path: Path) -> None:
    with Inbox(tmp_path / "inbox.db") as inbox:
        inbox.append([_event(GROUP, mentioned=True)])
        [back] = inbox.read(0)
    assert back.chat_type == "group" and back.mentioned is True


def test_an_inbox_from_schema_2_opens_and_its_events_still_push(tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
CREATE TABLE events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, chat_id TEXT,
    message_id TEXT NOT NULL, sender_id TEXT NOT NULL, sender_upn TEXT NOT NULL, sender_name TEXT NOT NULL,
    trust TEXT NOT NULL, text TEXT NOT NULL, subject TEXT, created_at TEXT NOT NULL, received_at TEXT NOT NULL,
    source TEXT NOT NULL, confirmed INTEGER NOT NULL DEFAULT 0, read_at TEXT);
PRAGMA user_version = 2;
""")
    conn.execute("INSERT INTO events(key, kind, chat_id, message_id, sender_id, sender_upn, sender_name, trust, text, "
                 "subject, created_at, received_at, source, confirmed) VALUES (?, 'teams', ?, 'old', 's', 'u', 'n', "
                 "'colleague', 'old text', NULL, ?, ?, 'poll', 1)", (f"teams:{GROUP}:old", GROUP, _NOW, _NOW))
    conn.commit()
    conn.close()
    with Inbox(path) as inbox:
        [old] = inbox.read(0)
        assert old.chat_type == "" and old.mentioned is False and pushes(old, "mention")
        [new] = inbox.append([_event(GROUP, mentioned=True)])
        assert inbox.read(old.seq)[0].mentioned is True and new.seq > old.seq
    with Inbox(path) as inbox:  # a second open upgrades nothing more
        assert inbox.count() == 2
