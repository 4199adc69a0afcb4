"""What every MCP tool module shares: the `Tool` record, argument models, the untrusted-content
envelope, and the markdown renderer for outgoing messages.

It owns how inbound content is marked before a tool returns it (`wrap_untrusted`) and how
arguments are declared. It does not know MCP's wire types (`server.py` does) or Graph's
resources (each tool module does).
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import GraphError, ToolInputError

#: Teams rejects chat messages over about 28 KB (graph_chats_messages, "Teams message size limit").
MAX_MESSAGE_BYTES = 28 * 1024
_UPN = re.compile(r"^[^@\s<>()\[\],;:\"']+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Args(BaseModel):
    """Base of every tool's arguments: unknown keys are errors, so a typo is never silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


@dataclass(frozen=True)
class Tool:
    """One MCP tool: its name, what the model reads about it, its argument model and its body."""

    name: str
    description: str
    args: type[Args]
    run: Callable[[Any], Awaitable[Any]]
    read_only: bool = False

    def input_schema(self) -> dict[str, Any]:
        schema = self.args.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema


@dataclass(frozen=True)
class ToolImage:
    """A tool result the model sees as an image (MCP image content), with `info` as text beside it."""

    data: bytes
    mime_type: str
    info: dict[str, Any]


# --- untrusted content ---------------------------------------------------------------------------
#: Tags that mean something in the model's context: the host's channel envelope, our tool
#: envelope, conversation turns and tool-call markup. A closed list: any other `<word>` someone
#: wrote (`<div>`, `<3`, `a<b`) is theirs and stays as written.
CONTEXT_TAGS = (
    "channel", "external_content", "system", "system-reminder", "user", "assistant", "human",
    "tool_result", "tool_use", "tool_call", "function_calls", "function_results", "function_call",
    "invoke", "parameter", "thinking", "instructions", "untrusted",
)
# Whitespace, control and zero-width characters a reader skips over inside a tag.
_GAP = r"[\s\x00-\x1f\x7f\u200b-\u200f\u2060\ufeff]*"
_NAMES = "|".join(re.sub(r"[-_]", "[-_]?", re.escape(n).replace(r"\-", "-")) for n in CONTEXT_TAGS)
#: `<`, an optional `/`, then a listed name (or any `antml:` name), ending where a tag name ends.
#: Unclosed starts count too: the host's own guard matches `</channel` without its `>`.
_CONTEXT_TAG = re.compile(rf"<(?={_GAP}/?{_GAP}(?:(?:{_NAMES})|antml{_GAP}:[\w.-]*)(?![\w.:-]))", re.IGNORECASE)


def neutralise(text: str) -> str:
    """`text` with every opening or closing context tag made inert; everything else as written.

    Only the `<` of a listed tag changes, to `&lt;`, so `</channel>` reads as `&lt;/channel>`
    and cannot end or start an envelope, a turn or a tool call in the model's context.
    Idempotent; entity spellings such as `&lt;system>` are already inert and stay as they are.
    """
    return _CONTEXT_TAG.sub("&lt;", text)


def _attr(value: str) -> str:
    return html.escape(str(value), quote=True)


def wrap_untrusted(text: str, *, source: str, sender: str, at: str, trust: str = "external") -> str:
    """`text` inside an `<external_content>` envelope naming its source, sender, time and trust.

    The outer envelope is always added, even if the text already looks like one; any
    context tag inside the text is neutralised. Sponsor content is wrapped too (with
    trust="sponsor"): a tool result is data whoever wrote it.
    """
    attrs = f'source="{_attr(source)}" sender="{_attr(sender)}" received_at="{_attr(at)}" trust="{_attr(trust)}"'
    return f"<external_content {attrs}>\n{neutralise(text)}\n</external_content>"


def sender_label(name: str, address: str) -> str:
    """`Name (address)`, never `Name <address>` (angle brackets break channel envelopes)."""
    name, address = name.strip(), address.strip()
    if name and address and name.lower() != address.lower():
        return f"{name} ({address})"
    return name or address or "unknown sender"


# --- argument checks ------------------------------------------------------------------------------
def check_user_ref(value: str, field: str) -> str:
    """A UPN / mail address or an object id; anything else is refused before Graph sees it."""
    if _UPN.match(value) or _GUID.match(value):
        return value
    raise ToolInputError(f"{field}: {value!r} is not a user principal name (name@domain) or an object id",
                         hint="give the person's sign-in address, for example ada@contoso.com")


def check_address(value: str, field: str) -> str:
    if _UPN.match(value):
        return value
    raise ToolInputError(f"{field}: {value!r} is not an email address", hint="use name@domain")


def check_size(content: str) -> None:
    size = len(content.encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise ToolInputError(f"the message is {size} bytes; Teams accepts about {MAX_MESSAGE_BYTES}",
                             hint="shorten it or split it into several messages")


def parse_time(value: str) -> datetime | None:
    """An aware datetime from a Graph / inbox timestamp; None if it cannot be read."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- markdown -> simple HTML ------------------------------------------------------------------------
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])|(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_HEADING = re.compile(r"^\s*#{1,6}\s+(.*)$")


def _inline(text: str) -> str:
    """Inline markdown of one escaped line; code spans are set aside first so nothing inside them is styled."""
    spans: list[str] = []

    def keep(html_text: str) -> str:
        spans.append(html_text)
        return f"\x00{len(spans) - 1}\x00"

    text = _CODE_SPAN.sub(lambda m: keep(f"<code>{m.group(1)}</code>"), text)
    # URLs were escaped with the rest; &amp; in an href is correct HTML.
    text = _LINK.sub(lambda m: keep(f'<a href="{m.group(2)}">{m.group(1)}</a>'), text)
    text = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", text)
    text = _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)


def markdown_to_html(markdown: str) -> str:
    """Render the small markdown subset chat needs: bold, italics, code, links, lists, line breaks.

    The input is HTML-escaped first, so no tag in it survives: only the tags this
    function writes reach Teams or Outlook.
    """
    lines = html.escape(markdown.replace("\r\n", "\n"), quote=True).split("\n")
    out: list[str] = []
    items: list[str] = []
    list_tag = ""
    code: list[str] | None = None

    def flush_list() -> None:
        nonlocal list_tag
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{i}</li>" for i in items) + f"</{list_tag}>")
            items.clear()
        list_tag = ""

    for line in lines:
        if line.strip().startswith("```"):
            if code is None:
                flush_list()
                code = []
            else:
                out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
                code = None
            continue
        if code is not None:
            code.append(line)
            continue
        for pattern, tag in ((_BULLET, "ul"), (_NUMBERED, "ol")):
            if match := pattern.match(line):
                if list_tag != tag:
                    flush_list()
                    list_tag = tag
                items.append(_inline(match.group(1)))
                break
        else:
            flush_list()
            if match := _HEADING.match(line):
                out.append(f"<strong>{_inline(match.group(1))}</strong>")
            else:
                out.append(_inline(line))
    if code is not None:  # an unclosed fence still renders as code
        out.append("<pre><code>" + "\n".join(code) + "</code></pre>")
    flush_list()
    html_text = ""
    for part in out:
        block = part.startswith(("<ul>", "<ol>", "<pre>"))
        if html_text and not block and not html_text.endswith(("</ul>", "</ol>", "</pre>")):
            html_text += "<br>"
        html_text += part
    return html_text


def message_body(text: str, fmt: str) -> dict[str, str]:
    """A Graph itemBody for `text` in `fmt` ("text" or "markdown")."""
    if not text.strip():
        raise ToolInputError("the message text is empty", hint="give the text to send")
    if fmt == "markdown":
        return {"contentType": "html", "content": markdown_to_html(text)}
    return {"contentType": "text", "content": text}


def not_a_member(exc: GraphError, chat_id: str) -> ToolInputError | None:
    """Graph's 403 on a chat the agent is not in, as the tool error every chat tool gives; None otherwise."""
    if exc.status != 403:
        return None
    return ToolInputError(f"the agent is not a member of chat {chat_id!r}", hint="use list_chats for the agent's chats")
