"""The markdown a reader produces: a character budget, notes, control-character cleaning and
the markdown table every format shares.

Readers add blocks to a `Sink` until it says it is full, so a long document stops being read
as soon as the output limit is reached. Text from documents is untrusted: it is cleaned here,
and wrapped as data by the tool layer, not here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .model import DocumentText, Kind

# C0 and C1 control characters except tab and newline, plus the bidi embedding, override and
# isolate controls that can make text read differently from what it is ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Line ends as `\\n`, no control characters but tab and newline."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def cell_text(value: str) -> str:
    """One markdown table cell: no line breaks, pipes escaped."""
    flat = clean(value).strip().replace("\n", "<br>")
    return flat.replace("|", "\\|")


def table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown pipe table; the first row is the header. Short rows are padded."""
    if not rows:
        return ""
    width = max(len(r) for r in rows) or 1
    lines = []
    for i, row in enumerate(rows):
        cells = [cell_text(c) for c in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "---|" * width)
    return "\n".join(lines)


class Sink:
    """Collects markdown blocks up to `max_chars`, and the notes a reader leaves."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars
        self._parts: list[str] = []
        self._size = 0
        self.notes: list[str] = []
        self.truncated = False

    @property
    def full(self) -> bool:
        return self.truncated and self._size >= self._max

    def add(self, block: str) -> bool:
        """Append a block; False once the budget is spent (the reader should stop)."""
        if self.full:
            return False
        sep = "\n\n" if self._parts else ""
        room = self._max - self._size - len(sep)
        # Clean no more than could fit: cleaning only removes characters, so twice the room
        # (plus slack for the stripped ends) is enough and a huge block costs no more than a small one.
        window = 2 * max(room, 0) + 1024
        clipped = len(block) > window
        text = clean(block[:window] if clipped else block).strip("\n")
        if not text and not clipped:
            return True
        if len(text) <= room and not clipped:
            self._parts.append(sep + text)
            self._size += len(sep) + len(text)
            return True
        if room > 0:
            cut = text[:room]
            # Prefer to cut at a line end, so a table row or sentence is not split mid-way.
            line_end = cut.rfind("\n")
            if line_end > room // 2:
                cut = cut[:line_end]
            self._parts.append(sep + cut)
        self._size = self._max
        self.cut(f"output cut at {self._max} characters (the read limit)")
        return False

    def cut(self, note: str) -> None:
        """A limit was hit: mark the result truncated and say which."""
        self.truncated = True
        self.note(note)

    def note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def result(self, kind: Kind, **counts: int | None) -> DocumentText:
        return DocumentText(markdown="".join(self._parts), kind=kind, truncated=self.truncated,
                            notes=list(self.notes), **counts)
