"""Subscription `resource` strings: parsing them, and matching a change to them.

Owns which resources the sandbox accepts for delegated subscriptions (Teams
chat and channel messages, Outlook messages), their query options (`$select`, a small
`$filter`, a channel's mention filter and `$search`), and the match between a new
chat message, channel message or mail and a parsed resource. It does not own the
HTTP routes (graph_subscriptions.py), the creation rules (rules.py) or delivery
(delivery.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

if TYPE_CHECKING:
    from ..state import SandboxState
    from ..tenant import ChannelMessage, Chat, MailMessage

USER_CHATS = "user_chats"  # /users/{id}/chats/getAllMessages
CHAT = "chat"  # /chats/{id}/messages
MAIL = "mail"  # /users/{id}/messages, /users/{id}/mailFolders('{id}')/messages
CHANNEL = "channel"  # /teams/{id}/channels/{id}/messages (posts and replies)

#: Query options Graph rejects on a rich mail subscription: "Do not include in the
#: URL $top, $skip, $orderby, $select=Body,UniqueBody, and $expand other than
#: singleValueExtendedProperties or multiValueExtendedProperties" (Outlook change
#: notifications overview).
RICH_MAIL_FORBIDDEN_OPTIONS = ("$top", "$skip", "$orderby")
RICH_MAIL_FORBIDDEN_SELECT = ("body", "uniquebody")
_ALLOWED_EXPAND = ("singlevalueextendedproperties", "multivalueextendedproperties")


class ResourceError(Exception):
    """The resource is malformed, unsupported or not the caller's; carries Graph's status and code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]  # lowercased property path, e.g. ("from", "emailaddress", "address")
    op: str  # "eq" | "ne"
    value: Any


@dataclass(frozen=True)
class ResourceSpec:
    """A parsed subscription resource."""

    kind: str  # USER_CHATS | CHAT | MAIL
    user_id: str  # whose chats or mailbox ("" for CHAT)
    chat_id: str = ""
    folder: str | None = None  # lowercased folder name or id; None = the whole mailbox
    select: tuple[str, ...] = ()
    filter: tuple[Clause, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)  # lowercased $option -> raw value
    team_id: str = ""  # CHANNEL: the team and channel
    channel_id: str = ""
    mentioned: str = ""  # CHANNEL: only messages that @mention this user id
    search: str = ""  # CHANNEL: only messages whose text contains this keyword

    @property
    def is_teams(self) -> bool:
        return self.kind in (USER_CHATS, CHAT, CHANNEL)

    @property
    def is_outlook(self) -> bool:
        return self.kind == MAIL

    def key(self) -> str:
        """A canonical form, so `me/...` and `/Users/{id}/...` count as one resource."""
        if self.kind == USER_CHATS:
            base = f"users/{self.user_id}/chats/getallmessages"
        elif self.kind == CHAT:
            base = f"chats/{self.chat_id}/messages"
        elif self.kind == CHANNEL:
            base = f"teams/{self.team_id.lower()}/channels/{self.channel_id}/messages"
        else:
            base = f"users/{self.user_id}/" + (f"mailfolders/{self.folder}/messages" if self.folder else "messages")
        query = "&".join(f"{k}={v.lower()}" for k, v in sorted(self.options.items()))
        return f"{base}?{query}" if query else base

    def matches_chat(self, chat: Chat) -> bool:
        if self.kind == USER_CHATS:
            return self.user_id in chat.member_ids
        return self.kind == CHAT and self.chat_id == chat.id

    def matches_channel(self, msg: ChannelMessage) -> bool:
        """A post or a reply in the subscribed channel ("messages (and replies) in a channel",
        teams-changenotifications-chatmessage), narrowed by the mention filter and `$search`."""
        if self.kind != CHANNEL or self.team_id.lower() != msg.team_id.lower() or self.channel_id != msg.chat_id:
            return False
        if self.mentioned and not any(((m.get("mentioned") or {}).get("user") or {}).get("id") == self.mentioned
                                      for m in msg.mentions):
            return False
        return not self.search or self.search.casefold() in msg.content.casefold()

    def matches_mail(self, msg: MailMessage, resource_json: Mapping[str, Any]) -> bool:
        if self.kind != MAIL or msg.owner_id != self.user_id:
            return False
        if self.folder is not None and self.folder != msg.folder.lower():
            return False
        return all(_holds(clause, resource_json) for clause in self.filter)


def _keyed(segment: str, name: str) -> str | None:
    """`name('x')` or `name(x)` -> `x` (OData key syntax), else None."""
    match = re.fullmatch(rf"{name}\('?([^')]*)'?\)", segment, flags=re.IGNORECASE)
    return match.group(1) if match else None


def _split(path: str) -> list[str]:
    """Split on `/` and turn `users('x')` into `users`, `x` so both key styles parse alike."""
    parts: list[str] = []
    for segment in path.strip("/").split("/"):
        for name in ("users", "chats", "mailfolders", "teams", "channels"):
            key = _keyed(segment, name)
            if key is not None:
                parts += [name, key]
                break
        else:
            parts.append(segment)
    return parts


def parse_resource(sb: SandboxState, resource: str, caller_id: str) -> ResourceSpec:
    """Parse `resource` as Graph does (case-insensitive, leading slash optional).

    "Any path starting with `me` can also be used with `users/{id}` instead of
    `me`" (subscription-post-subscriptions), so `me` resolves to `caller_id`.
    Raises `ResourceError`.
    """
    if not isinstance(resource, str) or not resource.strip():
        raise ResourceError(400, "InvalidRequest", "Property 'resource' is required.")
    raw_path, _, raw_query = resource.strip().partition("?")
    parts = _split(unquote(raw_path))
    low = [p.lower() for p in parts]
    options = _parse_options(raw_query)

    if low[:1] == ["chats"]:
        if low == ["chats", "getallmessages"]:
            # Delegated: "Not supported" (subscription-post-subscriptions, permissions table).
            raise ResourceError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                                "Reason: The resource '/chats/getAllMessages' is not supported in delegated context; "
                                "it needs the application permission Chat.Read.All.]")
        if len(parts) == 3 and low[2] == "messages":
            return _chat_spec(CHAT, "", parts[1], options)
        raise _unsupported(resource)

    if low[:1] == ["teams"]:
        return _channel_spec(resource, parts, low, options)

    if low[:1] == ["me"]:
        user_id, rest, rest_low = caller_id, parts[1:], low[1:]
    elif low[:1] == ["users"] and len(parts) >= 2:
        user = sb.tenant.user(parts[1])
        user_id, rest, rest_low = (user.id if user else parts[1]), parts[2:], low[2:]
    else:
        raise _unsupported(resource)

    if rest_low == ["chats", "getallmessages"]:
        # `/me/chats/getAllMessages` is on the Teams licensing page but not in the
        # permission table (reference §1.1, AMBIGUOUS); accepted as users/{me}.
        return _chat_spec(USER_CHATS, user_id, "", options)
    if rest_low == ["messages"]:
        return _mail_spec(user_id, None, options)
    if len(rest) == 3 and rest_low[0] == "mailfolders" and rest_low[2] == "messages" and rest[1]:
        return _mail_spec(user_id, rest[1].lower(), options)
    raise _unsupported(resource)


#: teams-changenotifications-chatmessage, "Subscribe to messages (and replies) in a channel that
#: mention a specific user": `$filter=mentions/any(u: u/mentioned/user/id eq '{user-id}')`.
_MENTION_FILTER = re.compile(r"^\s*mentions/any\(\s*(\w+)\s*:\s*\1/mentioned/user/id\s+eq\s+'([^']+)'\s*\)\s*$",
                             re.IGNORECASE)


def _channel_spec(resource: str, parts: list[str], low: list[str], options: dict[str, str]) -> ResourceSpec:
    if low == ["teams", "getallmessages"]:
        # Messages across all channels: delegated "Not supported", application ChannelMessage.Read.All
        # (teams-changenotifications-chatmessage; subscription-post-subscriptions).
        raise ResourceError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                            "Reason: The resource '/teams/getAllMessages' is not supported in delegated context; "
                            "it needs the application permission ChannelMessage.Read.All.]")
    if len(parts) != 5 or low[2] != "channels" or low[4] != "messages" or not parts[1] or not parts[3]:
        raise _unsupported(resource)
    unknown = set(options) - {"$filter", "$search"}
    if unknown:
        raise ResourceError(400, "InvalidRequest", f"Query option '{sorted(unknown)[0]}' is not supported on "
                            "channel message subscriptions.")
    mentioned = ""
    if "$filter" in options:
        match = _MENTION_FILTER.match(options["$filter"])
        if match is None:
            raise ResourceError(400, "InvalidRequest", "The only $filter on channel messages is "
                                "\"mentions/any(u: u/mentioned/user/id eq '{user-id}')\".")
        mentioned = match.group(2)
    return ResourceSpec(CHANNEL, "", team_id=parts[1], channel_id=parts[3], mentioned=mentioned,
                        search=options.get("$search", "").strip().strip('"'), options=options)


def _unsupported(resource: str) -> ResourceError:
    return ResourceError(400, "InvalidRequest", f"The resource '{resource}' is not supported for subscriptions "
                         "in the sandbox (chat messages, channel messages and Outlook messages are).")


def _parse_options(raw_query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        options[name.strip().lower()] = value.strip()
    return options


def _chat_spec(kind: str, user_id: str, chat_id: str, options: dict[str, str]) -> ResourceSpec:
    unknown = set(options) - {"$select"}
    if unknown:
        raise ResourceError(400, "InvalidRequest", f"Query option '{sorted(unknown)[0]}' is not supported on "
                            "chat message subscriptions.")
    return ResourceSpec(kind, user_id, chat_id=chat_id, select=_select(options), options=options)


def _mail_spec(user_id: str, folder: str | None, options: dict[str, str]) -> ResourceSpec:
    expand = options.get("$expand", "")
    for item in filter(None, (e.strip().lower() for e in expand.split(","))):
        if not item.startswith(_ALLOWED_EXPAND):
            raise ResourceError(400, "InvalidRequest", "Only singleValueExtendedProperties or "
                                "multiValueExtendedProperties may be expanded in a subscription resource.")
    clauses = parse_filter(options["$filter"]) if "$filter" in options else ()
    return ResourceSpec(MAIL, user_id, folder=folder, select=_select(options), filter=clauses, options=options)


def _select(options: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in options.get("$select", "").split(",") if s.strip())


# --- a small $filter: `prop eq literal [and ...]` -----------------------------------------
_CLAUSE = re.compile(r"^\s*([A-Za-z][\w/]*)\s+(eq|ne)\s+(.+?)\s*$", re.IGNORECASE)


def parse_filter(text: str) -> tuple[Clause, ...]:
    """Parse the subset of OData `$filter` the sandbox evaluates: equality clauses joined by `and`
    (enough for the documented `hasAttachments eq true AND importance eq 'High'`)."""
    clauses: list[Clause] = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CLAUSE.match(part)
        if match is None:
            raise ResourceError(400, "BadRequest", f"Invalid filter clause: '{part.strip()}'. The sandbox "
                                "supports 'property eq|ne literal' clauses joined by 'and'.")
        path = tuple(p.lower() for p in match.group(1).split("/"))
        clauses.append(Clause(path, match.group(2).lower(), _literal(match.group(3))))
    return tuple(clauses)


def _literal(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    try:
        return float(text)
    except ValueError:
        raise ResourceError(400, "BadRequest", f"Invalid filter literal: {text}") from None


def _lookup(resource_json: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = resource_json
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = next((v for k, v in node.items() if k.lower() == name), None)
    return node


def _holds(clause: Clause, resource_json: Mapping[str, Any]) -> bool:
    actual, wanted = _lookup(resource_json, clause.path), clause.value
    if isinstance(actual, str) and isinstance(wanted, str):
        # Exchange compares strings case-insensitively.
        equal = actual.casefold() == wanted.casefold()
    else:
        equal = actual == wanted
    return equal if clause.op == "eq" else not equal
