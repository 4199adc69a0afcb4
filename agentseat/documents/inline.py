"""Inline text with its formatting (`Styled` spans), and spans rendered back as markdown.

Shared by the Word reader (runs to markdown) and the markdown parser (markdown to runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True)
class Styled:
    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    link: str | None = None  # an absolute http(s) or mailto URL

    @property
    def style(self) -> tuple[bool, bool, bool]:
        return self.bold, self.italic, self.code


def render(spans: Iterable[Styled]) -> str:
    """Spans as markdown: adjacent spans of one style merge, links wrap their spans."""
    out = []
    for link, in_link in groupby(spans, key=lambda s: s.link):
        text = "".join(_styled(style, "".join(s.text for s in same))
                       for style, same in groupby(in_link, key=lambda s: s.style))
        out.append(f"[{text}]({link})" if link and text.strip() else text)
    return "".join(out)


def _styled(style: tuple[bool, bool, bool], text: str) -> str:
    bold, italic, code = style
    core = text.strip()
    if not core or not (bold or italic or code):
        return text
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()):]
    if code:
        fence = "``" if "`" in core else "`"
        core = f"{fence}{core}{fence}"
    if italic:
        core = f"*{core}*"
    if bold:
        core = f"**{core}**"
    return lead + core + trail
