"""The record: which Graph writes are the agent speaking, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentseat.record import Outbound, Record, outbound


def test_writes_that_are_messages_and_writes_that_are_not() -> None:
    sent = outbound("POST", "/chats/19%3Aa%40thread.v2/messages", {"body": {"contentType": "html",
                    "content": "<p>Hi <b>Ada</b></p>"}}, {"id": "m1"})
    assert sent == Outbound("send", "teams", "19:a@thread.v2", message_id="m1", text="Hi Ada")
    mail = outbound("POST", "/me/sendMail", {"message": {"subject": "Figures", "body": {"contentType": "text",
                    "content": "attached"}, "toRecipients": [{"emailAddress": {"address": "ada@contoso.com"}}]}}, None)
    assert mail is not None and (mail.medium, mail.recipients, mail.subject) == ("mail", ("ada@contoso.com",),
                                                                                   "Figures")
    deleted = outbound("POST", "/users/u1/chats/19:a@thread.v2/messages/m1/softDelete", None, None)
    assert deleted == Outbound("delete", "teams", "19:a@thread.v2", message_id="m1")
    reply = outbound("POST", "/teams/t1/channels/19:c@thread.tacv2/messages/r1/replies",
                     {"body": {"content": "ok"}}, {"id": "r2"})
    assert reply == Outbound("reply", "channel", "19:c@thread.tacv2", thread_id="r1", message_id="r2", text="ok")
    assert outbound("POST", "/chats", {"chatType": "oneOnOne"}, {"id": "19:new"}) is None  # a chat, not a message
    assert outbound("PUT", "/me/drive/root:/a.txt:/content", None, {}) is None


def test_rows_past_the_retention_are_pruned(tmp_path: Path) -> None:
    record = Record(tmp_path / "record.db", retention_days=30)
    now = datetime.now(UTC)
    record.add(Outbound("send", "teams", "19:a", text="old"), at=now - timedelta(days=31))
    record.add(Outbound("send", "teams", "19:a", text="new"), at=now - timedelta(days=29))
    assert [r["text"] for r in record.query(chat_id="19:a")] == ["new", "old"]
    assert record.prune(now) == 1
    assert [r["text"] for r in record.query(chat_id="19:a")] == ["new"]
    record.close()
    assert (tmp_path / "record.db").stat().st_mode & 0o777 == 0o600
