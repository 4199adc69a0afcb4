"""The `Event` contract: one normalised inbound message, whichever way it arrived.

Its key (`teams:{chat}:{message}` or `mail:{message}`) is the dedupe key, so a
message seen by the webhook, the poller and a replay is one event. A change to a
chat message is an event of its own: `teams_edit` (key
`teams_edit:{chat}:{message}:{edited at}`, one per edit; `created_at` is Graph's
`lastEditedDateTime`, `text` the new text) and `teams_delete` (key
`teams_delete:{chat}:{message}`; `created_at` is `deletedDateTime`, `text` empty).
The time lives in `created_at`, so these need no column an older inbox lacks.

A post or reply in a team channel is kind `channel` (key `channel:{channel}:{message}`):
`chat_id` holds the channel id, `team_id` its team, and `thread_id` the root post a reply
belongs to ("" for a root post). `attachments` is what `download_attachment` can fetch, as
a JSON array of `{"id", "name", "type", "size"}` ("" when there are none); see
`attachment_list`.

Time raises events too (agentseat/clock): `reminder` (key `reminder:{promise}:{due}`,
`chat_id` the promise's chat, `message_id` its id, `created_at` when it fell due) and
`summary` (key `summary:{day}`, no chat). Their source is `clock`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any, Literal

from agentseat.errors import InboxError

Kind = Literal["teams", "mail", "teams_edit", "teams_delete", "channel", "reminder", "summary"]
Trust = Literal["sponsor", "colleague", "external"]
Source = Literal["webhook", "poll", "clock", "eventhub"]
_KINDS = ("teams", "mail", "teams_edit", "teams_delete", "channel", "reminder", "summary")
#: Kinds that name a chat or channel message (they carry a chat_id: for `channel`, the channel's id).
CHAT_KINDS = frozenset({"teams", "teams_edit", "teams_delete", "channel"})
#: Kinds that report a change to a message already sent, not a new message.
CHANGE_KINDS = frozenset({"teams_edit", "teams_delete"})
_TRUSTS = ("sponsor", "colleague", "external")
_SOURCES = ("webhook", "poll", "clock", "eventhub")
#: Kinds the runtime's clock raises (agentseat/clock): nobody sent them, time did.
CLOCK_KINDS = frozenset({"reminder", "summary"})
#: Graph's chat.chatType values, and "" where the kind of chat is not known (mail, older events).
_CHAT_TYPES = ("", "oneOnOne", "group", "meeting")
#: What an attachment is: an inline image (hostedContents), a file reference, or an Adaptive Card.
ATTACHMENT_TYPES = ("image", "file", "card")
_ATTACHMENT_KEYS = frozenset({"id", "name", "type", "size"})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True, slots=True)
class Event:
    """One inbound chat or mail message, as every sink sees it (DESIGN, "Contracts: Event")."""

    seq: int
    key: str
    kind: Kind
    chat_id: str | None
    message_id: str
    sender_id: str
    sender_upn: str
    sender_name: str
    trust: Trust
    text: str
    subject: str | None
    created_at: str
    received_at: str
    source: Source
    #: True when sender, text and time were read from Graph with the agent's own token (a poll,
    #: a fetch, a confirmation); False when they come from a notification alone. Only a
    #: confirmed event may carry trust above untrusted, run a handler or answer a prompt.
    confirmed: bool = False
    #: Teams only: the chat's chatType ("oneOnOne", "group", "meeting"), "" when unknown.
    chat_type: str = ""
    #: Teams only: the message @mentions the agent (its `mentions` name the agent's user id).
    mentioned: bool = False
    #: JSON array of `{"id", "name", "type", "size"}`, "" when there are none (`attachment_list`).
    attachments: str = ""
    #: Channel posts only: the team, and the root post of a reply's thread ("" for a root post).
    team_id: str = ""
    thread_id: str = ""

    def with_seq(self, seq: int) -> Event:
        """This event with the seq the inbox gave it.

        A valid event with a valid seq is still valid, so the checks of `__post_init__` (dates,
        key, UTF-8: about 20 us) are not run again, as `dataclasses.replace` would.
        """
        if not isinstance(seq, int) or seq < 0:
            raise InboxError("invalid event: seq must be a non-negative int", hint="a bug in the inbox")
        numbered = copy.copy(self)
        object.__setattr__(numbered, "seq", seq)
        return numbered

    def __post_init__(self) -> None:
        if problem := self._problem():
            raise InboxError(f"invalid event: {problem}", hint="a bug in the normaliser; the event was not stored")

    def _problem(self) -> str | None:
        # Checked where the event is built, so a bad one never fails half-way through a batch.
        if not isinstance(self.seq, int) or self.seq < 0:
            return "seq must be a non-negative int"
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if value is None and name in ("chat_id", "subject"):
                continue
            if not isinstance(value, str):
                return f"{name} must be a string"
            try:
                value.encode("utf-8")  # a lone surrogate would fail inside the transaction
            except UnicodeEncodeError:
                return f"{name} is not valid UTF-8 text"
        if not isinstance(self.confirmed, bool) or not isinstance(self.mentioned, bool):
            return "confirmed and mentioned must be bools"
        if self.chat_type not in _CHAT_TYPES:
            return "chat_type is not one of the allowed values"
        if self.kind not in _KINDS or self.trust not in _TRUSTS or self.source not in _SOURCES:
            return "kind, trust or source is not one of the allowed values"
        if not self.message_id:
            return "message_id is empty"
        if (self.kind in CHAT_KINDS and not self.chat_id) or (self.kind == "mail" and self.chat_id is not None):
            return "a teams event needs a chat_id and a mail event has none"
        if (self.kind in CLOCK_KINDS) != (self.source == "clock"):
            return "reminder and summary events, and only they, come from the clock"
        if (self.kind == "reminder" and not self.chat_id) or (self.kind == "summary" and self.chat_id is not None):
            return "a reminder needs its promise's chat_id and a summary has none"
        if self.attachments and (problem := _attachments_problem(self.attachments)):
            return problem
        if (self.team_id or self.thread_id) and self.kind != "channel":
            return "only a channel event has a team_id or thread_id"
        if self.kind == "channel" and not self.team_id:
            return "a channel event needs a team_id"
        if self.key != event_key(self.kind, self.chat_id, self.message_id, self.created_at):
            return "key does not match kind, chat_id and message_id"
        for name in ("created_at", "received_at"):
            try:
                datetime.fromisoformat(getattr(self, name))
            except ValueError:
                return f"{name} is not ISO 8601"
        return None

    @classmethod
    def teams(cls, *, chat_id: str, message_id: str, sender_id: str, sender_upn: str, sender_name: str,
              trust: Trust, text: str, created_at: str, source: Source, received_at: str | None = None,
              confirmed: bool = False, chat_type: str = "", mentioned: bool = False,
              attachments: str = "") -> Event:
        return cls(0, event_key("teams", chat_id, message_id), "teams", chat_id, message_id, sender_id, sender_upn,
                   sender_name, trust, text, None, created_at, received_at or _now(), source, confirmed, chat_type,
                   mentioned, attachments)

    @classmethod
    def channel(cls, *, team_id: str, channel_id: str, message_id: str, thread_id: str = "", sender_id: str,
                sender_upn: str, sender_name: str, trust: Trust, text: str, created_at: str, source: Source,
                received_at: str | None = None, confirmed: bool = False, mentioned: bool = False,
                attachments: str = "") -> Event:
        """A post (thread_id "") or a reply (thread_id: its root post) in a team channel."""
        return cls(0, event_key("channel", channel_id, message_id), "channel", channel_id, message_id, sender_id,
                   sender_upn, sender_name, trust, text, None, created_at, received_at or _now(), source, confirmed,
                   "", mentioned, attachments, team_id, thread_id)

    @classmethod
    def change(cls, kind: Kind, *, chat_id: str, message_id: str, sender_id: str, sender_upn: str,
               sender_name: str, trust: Trust, text: str, changed_at: str, source: Source,
               received_at: str | None = None, confirmed: bool = False, chat_type: str = "",
               mentioned: bool = False, attachments: str = "") -> Event:
        """A `teams_edit` (text: the new text) or `teams_delete` (text: empty) of one chat message."""
        return cls(0, event_key(kind, chat_id, message_id, changed_at), kind, chat_id, message_id, sender_id,
                   sender_upn, sender_name, trust, text, None, changed_at, received_at or _now(), source, confirmed,
                   chat_type, mentioned, attachments)

    @classmethod
    def mail(cls, *, message_id: str, sender_id: str, sender_upn: str, sender_name: str, trust: Trust, text: str,
             subject: str | None, created_at: str, source: Source, received_at: str | None = None,
             confirmed: bool = False, attachments: str = "") -> Event:
        return cls(0, event_key("mail", None, message_id), "mail", None, message_id, sender_id, sender_upn,
                   sender_name, trust, text, subject, created_at, received_at or _now(), source, confirmed,
                   "", False, attachments)

    @classmethod
    def reminder(cls, *, promise_id: str, chat_id: str, description: str, due: str,
                 received_at: str | None = None) -> Event:
        """A promise fallen due: `created_at` is when it was due, `received_at` when it fired (the
        difference is how late). Written by the agent itself and raised by its own clock, so it is
        confirmed; trust stays `colleague`, as it must never authorise what only a sponsor may."""
        return cls(0, event_key("reminder", chat_id, promise_id, due), "reminder", chat_id, promise_id, "", "",
                   "agentseat clock", "colleague", description, None, due, received_at or _now(), "clock", True)

    @classmethod
    def summary(cls, *, day: str, text: str, at: str, received_at: str | None = None) -> Event:
        """The daily summary of `day` (YYYY-MM-DD, the sponsor's time zone), due at `at`."""
        return cls(0, event_key("summary", None, day), "summary", None, day, "", "", "agentseat clock", "colleague",
                   text, f"Daily summary {day}", at, received_at or _now(), "clock", True)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        values = {name: row[name] for name in _FIELDS}
        values["confirmed"] = bool(values["confirmed"])  # SQLite keeps it as 0/1
        values["mentioned"] = bool(values["mentioned"])
        return cls(**values)

    def attachment_list(self) -> list[dict[str, Any]]:
        """The attachments as dicts with `id`, `name`, `type` and `size` (an int, or None if unknown)."""
        return json.loads(self.attachments) if self.attachments else []

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))



_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
#: The events table's columns in `Event` order: the SELECT list `Event.from_row` reads.
COLUMNS = ", ".join(_FIELDS)
_TEXT_FIELDS = tuple(name for name in _FIELDS[1:] if name not in ("confirmed", "mentioned"))

def attachments_json(items: list[dict[str, Any]]) -> str:
    """`Event.attachments` for `items` (dicts with id, name, type, size): "" for none."""
    if not items:
        return ""
    return json.dumps([{k: item.get(k) for k in ("id", "name", "type", "size")} for item in items],
                      ensure_ascii=False, separators=(",", ":"))


def _attachments_problem(raw: str) -> str | None:
    try:
        items = json.loads(raw)
    except ValueError:
        return "attachments is not JSON"
    if not isinstance(items, list):
        return "attachments must be a JSON array"
    for item in items:
        if not isinstance(item, dict) or set(item) != _ATTACHMENT_KEYS:
            return "each attachment needs exactly id, name, type and size"
        if not isinstance(item["id"], str) or not item["id"] or not isinstance(item["name"], str):
            return "an attachment's id and name must be strings (id non-empty)"
        if item["type"] not in ATTACHMENT_TYPES:
            return "an attachment's type is not image, file or card"
        if item["size"] is not None and (not isinstance(item["size"], int) or item["size"] < 0):
            return "an attachment's size must be a non-negative int or null"
    return None


def event_key(kind: str, chat_id: str | None, message_id: str, changed_at: str | None = None) -> str:
    """The dedupe key: the same message (or the same edit, or its deletion) from webhook,
    poll or replay has one key. An edit's key holds its `lastEditedDateTime`, so a second
    edit is a second event and a reaction (which changes only lastModifiedDateTime) none."""
    if kind == "teams_edit":
        return f"teams_edit:{chat_id}:{message_id}:{changed_at}"
    if kind in ("teams", "teams_delete", "channel"):
        return f"{kind}:{chat_id}:{message_id}"
    if kind == "reminder":  # one per promise and due time: re-raising it after a crash is a duplicate
        return f"reminder:{message_id}:{changed_at}"
    if kind == "summary":
        return f"summary:{message_id}"
    return f"mail:{message_id}"
