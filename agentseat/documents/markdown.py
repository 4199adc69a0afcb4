"""A small markdown parser for the subset `markdown_to_docx` writes: headings, paragraphs, bold,
italic, inline code, links, bulleted and numbered lists (one level of nesting), pipe tables,
fenced code blocks, block quotes and rules. Anything else is kept as plain paragraph text.

It produces plain dataclasses; it knows nothing of Word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .inline import Styled

Spans = list[Styled]


@dataclass
class Heading:
    level: int
    spans: Spans


@dataclass
class Paragraph:
    spans: Spans
    quote: bool = False


@dataclass
class Code:
    text: str


@dataclass
class Rule:
    pass


@dataclass
class Item:
    spans: Spans
    children: ListBlock | None = None


@dataclass
class ListBlock:
    ordered: bool
    items: list[Item] = field(default_factory=list)


@dataclass
class Table:
    rows: list[list[Spans]]  # the first row is the header


Block = Heading | Paragraph | Code | Rule | ListBlock | Table

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]|$)")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t])#+$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ITEM = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])[ \t]+(.*)$")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ ]?(.*)$")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")

# Each pattern stops at the next delimiter of its kind, so no opener scans past a closer and
# the whole line is matched in linear time (a lazy `.*?` made "**a " * 25000 take 40 s).
_INLINE = re.compile(
    r"(?P<escape>\\[\\`*_\[\]()#+\-.!|{}<>~])"
    r"|(?<!`)(?P<ticks>`{1,3})(?!`)(?P<code>[^`]+)(?P=ticks)(?!`)"
    r"|\[(?P<ltext>(?:[^\[\]]|\[[^\[\]]*\])*)\]"
    r"\((?P<url><[^<>\n]*>|[^()\s]+(?:\([^()\s]*\))?)(?:[ \t]+\"[^\"\n]*\")?\)"
    r"|<(?P<auto>(?:https?://|mailto:)[^\s<>]+)>"
    r"|\*\*\*(?P<bi>[^\s*](?:[^*]*[^\s*])?)\*\*\*"
    r"|\*\*(?P<bold>[^\s*](?:(?:[^*]|\*(?!\*))*?[^\s*])?)\*\*"
    r"|(?<!\w)__(?P<bold2>[^\s_](?:(?:[^_]|_(?!_))*?[^\s_])?)__(?!\w)"
    r"|\*(?P<italic>[^*\s](?:[^*]*[^*\s])?)\*"
    r"|(?<!\w)_(?P<italic2>[^_\s](?:[^_]*[^_\s])?)_(?!\w)"
)


def parse(markdown: str) -> list[Block]:
    """Markdown text to blocks."""
    lines = markdown.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4).split("\n")
    blocks: list[Block] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            blocks.append(Paragraph(inline(" ".join(s.strip() for s in para))))
            para.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif fence := _FENCE.match(line):
            flush()
            i = _code(lines, i, fence.group(1), blocks)
        elif heading := _HEADING.match(line):
            flush()
            text = _CLOSING_HASHES.sub("", line.strip()[len(heading.group(1)):].strip()).strip()
            blocks.append(Heading(len(heading.group(1)), inline(text)))
            i += 1
        elif _RULE.match(line):
            flush()
            blocks.append(Rule())
            i += 1
        elif _ITEM.match(line):
            flush()
            i = _list(lines, i, blocks)
        elif "|" in line and i + 1 < len(lines) and _TABLE_SEP.match(lines[i + 1]) and "-" in lines[i + 1]:
            flush()
            i = _table(lines, i, blocks)
        elif quote := _QUOTE.match(line):
            flush()
            quoted = [quote.group(1)]
            i += 1
            while i < len(lines) and (more := _QUOTE.match(lines[i])):
                quoted.append(more.group(1))
                i += 1
            blocks.append(Paragraph(inline(" ".join(q.strip() for q in quoted if q.strip())), quote=True))
        else:
            para.append(line)
            i += 1
    flush()
    return blocks


def _code(lines: list[str], i: int, fence: str, blocks: list[Block]) -> int:
    body = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(fence):
        body.append(lines[i])
        i += 1
    blocks.append(Code("\n".join(body)))
    return i + 1


def _list(lines: list[str], i: int, blocks: list[Block]) -> int:
    top: ListBlock | None = None
    while i < len(lines):
        match = _ITEM.match(lines[i])
        if match is None:
            line = lines[i]
            if line.strip() and line.startswith(" ") and top and top.items:
                _last_item(top).spans.extend(inline(" " + line.strip()))  # a continuation line
                i += 1
                continue
            if not line.strip() and i + 1 < len(lines) and _ITEM.match(lines[i + 1]):
                i += 1  # a blank line between items keeps the list open
                continue
            break
        indent, marker, text = len(match.group(1)), match.group(2), match.group(3)
        ordered = marker[0].isdigit()
        item = Item(inline(text))
        if indent >= 2 and top is not None and top.items:
            parent = top.items[-1]
            if parent.children is None or parent.children.ordered != ordered:
                parent.children = ListBlock(ordered)
            parent.children.items.append(item)
        else:
            if top is None or top.ordered != ordered:
                top = ListBlock(ordered)
                blocks.append(top)
            top.items.append(item)
        i += 1
    return i


def _last_item(top: ListBlock) -> Item:
    item = top.items[-1]
    return item.children.items[-1] if item.children and item.children.items else item


def _table(lines: list[str], i: int, blocks: list[Block]) -> int:
    rows = [_cells(lines[i])]
    i += 2
    while i < len(lines) and "|" in lines[i] and lines[i].strip():
        rows.append(_cells(lines[i]))
        i += 1
    width = len(rows[0])
    blocks.append(Table([(r + [[]] * width)[:width] for r in rows]))
    return i


def _cells(line: str) -> list[Spans]:
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") and not text.endswith("\\|") else text
    parts = re.split(r"(?<!\\)\|", text)
    return [inline(p.strip().replace("\\|", "|").replace("<br>", "\n")) for p in parts]


def inline(text: str, *, bold: bool = False, italic: bool = False, link: str | None = None) -> Spans:
    """Inline markdown to styled spans."""
    spans: Spans = []
    pos = 0
    for m in _INLINE.finditer(text):
        if m.start() > pos:
            spans.append(Styled(text[pos:m.start()], bold, italic, False, link))
        pos = m.end()
        if m.group("escape"):
            spans.append(Styled(m.group("escape")[1], bold, italic, False, link))
        elif m.group("code") is not None:
            spans.append(Styled(m.group("code").strip() or m.group("code"), bold, italic, True, link))
        elif m.group("ltext") is not None:
            url = m.group("url").strip("<>")
            if url.lower().startswith(_SAFE_SCHEMES):
                spans.extend(inline(m.group("ltext"), bold=bold, italic=italic, link=url))
            else:  # only web and mail links become hyperlinks; others stay visible as text
                spans.extend(inline(m.group("ltext"), bold=bold, italic=italic, link=link))
                spans.append(Styled(f" ({url})", bold, italic, False, link))
        elif m.group("auto"):
            spans.append(Styled(m.group("auto"), bold, italic, False, m.group("auto")))
        elif m.group("bi"):
            spans.extend(inline(m.group("bi"), bold=True, italic=True, link=link))
        elif m.group("bold") or m.group("bold2"):
            spans.extend(inline(m.group("bold") or m.group("bold2"), bold=True, italic=italic, link=link))
        else:
            spans.extend(inline(m.group("italic") or m.group("italic2"), bold=bold, italic=True, link=link))
    if pos < len(text):
        spans.append(Styled(text[pos:], bold, italic, False, link))
    return spans
