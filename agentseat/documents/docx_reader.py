"""Word (.docx) as markdown: headings, numbered and bulleted lists, tables, links, bold and italic.

Body content is walked in document order with python-docx. Pictures, text boxes, headers,
footers and comments are skipped, with a note for pictures.
"""

from __future__ import annotations

from pathlib import Path

import docx
from docx.document import Document
from docx.table import Table
from docx.text.hyperlink import Hyperlink
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from .inline import Styled, render
from .model import DocumentText, ReadLimits
from .output import Sink, table

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MONOSPACE = frozenset({"courier new", "courier", "consolas", "menlo", "monaco", "lucida console",
                        "cascadia code", "cascadia mono", "source code pro"})
_SAFE_SCHEMES = ("http://", "https://", "mailto:")


def read_docx(path: Path, limits: ReadLimits) -> DocumentText:
    document = docx.Document(str(path))
    sink = Sink(limits.max_chars)
    lists = _Lists(document)
    items: list[str] = []  # consecutive list items form one block, one line each
    for block in document.iter_inner_content():
        text, is_item = (_table(block), False) if isinstance(block, Table) else _paragraph(block, lists)
        if is_item:
            items.append(text)
            continue
        if items and not sink.add("\n".join(items)):
            break
        items.clear()
        if text and not sink.add(text):
            break
    else:
        sink.add("\n".join(items))
    pictures = len(document.element.body.findall(f".//{_W}drawing"))
    if pictures:
        sink.note(f"{pictures} picture(s) skipped: text only")
    return sink.result("docx")


def _paragraph(p: Paragraph, lists: _Lists) -> tuple[str, bool]:
    """The paragraph as markdown, and whether it is a list item."""
    text = render(_spans(p)).strip()
    if not text:
        return "", False
    style = (p.style.name if p.style is not None else "") or ""
    if style == "Title":
        return f"# {text}", False
    if style.startswith("Heading "):
        level = style.removeprefix("Heading ").strip()
        if level.isdigit():
            return "#" * min(int(level), 6) + " " + text, False
    if style in ("Quote", "Intense Quote"):
        return "> " + text, False
    marker = lists.marker(p, style)
    return (marker + text, True) if marker else (text, False)


def _spans(p: Paragraph, *, plain: bool = False) -> list[Styled]:
    """The paragraph's runs and links; `plain` drops bold (a table header is bold already)."""
    spans: list[Styled] = []
    for item in p.iter_inner_content():
        if isinstance(item, Hyperlink):
            url = item.url or ""
            link = url if url.lower().startswith(_SAFE_SCHEMES) else None
            spans.extend(Styled(r.text, bool(r.bold) and not plain, bool(r.italic), _mono(r), link)
                         for r in item.runs)
            if not item.runs and item.text:
                spans.append(Styled(item.text, link=link))
        elif isinstance(item, Run):
            spans.append(Styled(item.text, bool(item.bold) and not plain, bool(item.italic), _mono(item)))
    return spans


def _mono(run: Run) -> bool:
    name = run.font.name
    return bool(name) and name.lower() in _MONOSPACE


def _table(t: Table) -> str:
    rows = []
    for n, row in enumerate(t.rows):
        rows.append(["\n".join(render(_spans(p, plain=n == 0)) for p in cell.paragraphs).strip()
                     for cell in row.cells])
    return table(rows)


class _Lists:
    """List markers from the numbering definitions: bullet or number, level, and the running count."""

    def __init__(self, document: Document) -> None:
        self._formats: dict[tuple[str, int], str] = {}
        self._counts: dict[tuple[str, int], int] = {}
        try:
            numbering = document.part.numbering_part.element
        except (KeyError, NotImplementedError):
            numbering = None
        if numbering is not None:
            self._load(numbering)

    def _load(self, numbering) -> None:  # type: ignore[no-untyped-def]
        abstract: dict[str, dict[int, str]] = {}
        for a in numbering.findall(f"{_W}abstractNum"):
            levels = {}
            for lvl in a.findall(f"{_W}lvl"):
                fmt = lvl.find(f"{_W}numFmt")
                levels[int(lvl.get(f"{_W}ilvl", "0"))] = fmt.get(f"{_W}val", "decimal") if fmt is not None else "decimal"
            abstract[a.get(f"{_W}abstractNumId", "")] = levels
        for num in numbering.findall(f"{_W}num"):
            ref = num.find(f"{_W}abstractNumId")
            levels = abstract.get(ref.get(f"{_W}val", "") if ref is not None else "", {})
            for ilvl, fmt in levels.items():
                self._formats[(num.get(f"{_W}numId", ""), ilvl)] = fmt

    def marker(self, p: Paragraph, style: str) -> str:
        num_id, ilvl = _num_pr(p)
        if num_id is None and p.style is not None:
            num_id, ilvl = _style_num_pr(p)
        if num_id is None or num_id == "0":
            if style.startswith("List Bullet"):
                return "  " * _style_level(style) + "- "
            if style.startswith("List Number"):
                return "  " * _style_level(style) + "1. "
            return ""
        fmt = self._formats.get((num_id, ilvl), "bullet" if "Bullet" in style else "decimal")
        indent = "   " * (ilvl or _style_level(style))  # "List Number 2" nests by style, at ilvl 0
        if fmt in ("bullet", "none"):
            return indent + "- "
        key = (num_id, ilvl)
        self._counts[key] = self._counts.get(key, 0) + 1
        for deeper in [k for k in self._counts if k[0] == num_id and k[1] > ilvl]:
            del self._counts[deeper]  # a new parent item restarts its children
        return f"{indent}{self._counts[key]}. "


def _num_pr(p: Paragraph) -> tuple[str | None, int]:
    ppr = p._p.pPr
    num_pr = ppr.numPr if ppr is not None else None
    if num_pr is None or num_pr.numId is None:
        return None, 0
    ilvl = num_pr.ilvl.val if num_pr.ilvl is not None else 0
    return str(num_pr.numId.val), int(ilvl)


def _style_num_pr(p: Paragraph) -> tuple[str | None, int]:
    # List styles ("List Number") carry numbering in the style, not the paragraph.
    style = p.style
    while style is not None:
        ppr = style.element.pPr
        num_pr = ppr.numPr if ppr is not None else None
        if num_pr is not None and num_pr.numId is not None:
            ilvl = num_pr.ilvl.val if num_pr.ilvl is not None else 0
            return str(num_pr.numId.val), int(ilvl)
        style = style.base_style
    return None, 0


def _style_level(style: str) -> int:
    last = style.rsplit(" ", 1)[-1]
    return int(last) - 1 if last.isdigit() else 0
