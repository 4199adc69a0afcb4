"""Word (.docx) as markdown: headings, numbered and bulleted lists, tables, links, bold and italic.

Body content is walked in document order with python-docx. Pictures, text boxes, headers,
footers and comments are skipped, with a note for pictures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
from docx.enum.style import WD_STYLE_TYPE
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
_P, _TBL, _SDT, _SDT_CONTENT = f"{_W}p", f"{_W}tbl", f"{_W}sdt", f"{_W}sdtContent"
_R, _HYPERLINK, _VANISH = f"{_W}r", f"{_W}hyperlink", f"{_W}vanish"
_INLINE_WRAPPERS = frozenset(f"{_W}{tag}" for tag in ("ins", "smartTag", "fldSimple", "sdt", "sdtContent",
                                                       "customXml", "moveTo"))


def read_docx(path: Path, limits: ReadLimits) -> DocumentText:
    document = docx.Document(str(path))
    sink = Sink(limits.max_chars)
    styles = _Styles(document)
    lists = _Lists(document)
    items: list[str] = []  # consecutive list items form one block, one line each
    for block in _blocks(document):
        text, is_item = (_table(block), False) if isinstance(block, Table) else _paragraph(block, styles, lists)
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
    body = document.element.body
    pictures = len(body.findall(f".//{_W}drawing"))
    if pictures:
        sink.note(f"{pictures} picture(s) skipped: text only")
    hidden = sum(1 for v in body.iter(_VANISH)  # on runs only; a hidden paragraph mark hides no text
                 if v.getparent().getparent().tag == _R and v.get(f"{_W}val", "true") not in ("0", "false", "off"))
    if hidden:
        sink.note(f"{hidden} run(s) of hidden text skipped")
    return sink.result("docx")


def _blocks(document: Document) -> Iterator[Paragraph | Table]:
    """Body paragraphs and tables in order, including those inside content controls (w:sdt).

    Walks the children directly: python-docx's `iter_inner_content` runs an XPath union that
    grows quadratically with the body (six seconds for 40 000 paragraphs)."""
    parent = document._body
    stack = [iter(document.element.body)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
        elif child.tag == _P:
            yield Paragraph(child, parent)
        elif child.tag == _TBL:
            yield Table(child, parent)
        elif child.tag in (_SDT, _SDT_CONTENT):
            stack.append(iter(child))


def _paragraph(p: Paragraph, styles: _Styles, lists: _Lists) -> tuple[str, bool]:
    """The paragraph as markdown, and whether it is a list item."""
    text = render(_spans(p)).strip()
    if not text:
        return "", False
    style_id = p._p.style
    style = styles.name(style_id)
    if style == "Title":
        return f"# {text}", False
    if style.startswith("Heading "):
        level = style.removeprefix("Heading ").strip()
        if level.isdigit():
            return "#" * min(int(level), 6) + " " + text, False
    if style in ("Quote", "Intense Quote"):
        return "> " + text, False
    marker = lists.marker(p, style, styles.num_pr(style_id))
    return (marker + text, True) if marker else (text, False)


def _spans(p: Paragraph, *, plain: bool = False) -> list[Styled]:
    """The paragraph's runs and links; `plain` drops bold (a table header is bold already)."""
    spans: list[Styled] = []
    for el in _inline_elements(p._p):
        if el.tag == _HYPERLINK:
            link = Hyperlink(el, p)
            url = _url(link)
            spans.extend(Styled(r.text, bool(r.bold) and not plain, bool(r.italic), _mono(r), url)
                         for r in link.runs if not r.font.hidden)
        else:
            run = Run(el, p)
            if run.font.hidden:
                continue  # what the reader of the document does not see is not read either
            spans.append(Styled(run.text, bool(run.bold) and not plain, bool(run.italic), _mono(run)))
    return spans


def _inline_elements(parent: Any) -> Iterator[Any]:
    """Runs and hyperlinks, also inside tracked insertions, smart tags, fields and inline content
    controls (python-docx yields only direct children); tracked deletions are left out."""
    for child in parent:
        if child.tag in (_R, _HYPERLINK):
            yield child
        elif child.tag in _INLINE_WRAPPERS:
            yield from _inline_elements(child)


def _url(link: Hyperlink) -> str | None:
    try:
        url = link.url or ""
    except KeyError:  # a relationship id that the part does not define
        return None
    return url if url.lower().startswith(_SAFE_SCHEMES) else None


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

    def _load(self, numbering: Any) -> None:
        abstract: dict[str, dict[int, str]] = {}
        for a in numbering.findall(f"{_W}abstractNum"):
            levels = {}
            for lvl in a.findall(f"{_W}lvl"):
                fmt = lvl.find(f"{_W}numFmt")
                ilvl = lvl.get(f"{_W}ilvl", "0")
                if ilvl.isdigit():  # a damaged level is ignored, not fatal: the text still reads
                    levels[int(ilvl)] = fmt.get(f"{_W}val", "decimal") if fmt is not None else "decimal"
            abstract[a.get(f"{_W}abstractNumId", "")] = levels
        for num in numbering.findall(f"{_W}num"):
            ref = num.find(f"{_W}abstractNumId")
            levels = abstract.get(ref.get(f"{_W}val", "") if ref is not None else "", {})
            for ilvl, fmt in levels.items():
                self._formats[(num.get(f"{_W}numId", ""), ilvl)] = fmt

    def marker(self, p: Paragraph, style: str, style_num_pr: tuple[str | None, int]) -> str:
        num_id, ilvl = _num_pr(p)
        if num_id is None:
            num_id, ilvl = style_num_pr
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


class _Styles:
    """Paragraph style names and style numbering, looked up once per style: python-docx's
    `Paragraph.style` searches the styles part on every call (a millisecond per paragraph)."""

    def __init__(self, document: Document) -> None:
        self._by_id = {s.style_id: s for s in document.styles if s.type == WD_STYLE_TYPE.PARAGRAPH}
        self._default = document.styles.default(WD_STYLE_TYPE.PARAGRAPH)
        self._num: dict[str | None, tuple[str | None, int]] = {}

    def _style(self, style_id: str | None) -> Any:
        return self._by_id.get(style_id, self._default) if style_id else self._default

    def name(self, style_id: str | None) -> str:
        style = self._style(style_id)
        return (style.name or "") if style is not None else ""

    def num_pr(self, style_id: str | None) -> tuple[str | None, int]:
        # List styles ("List Number") carry their numbering in the style, not the paragraph.
        if style_id not in self._num:
            found: tuple[str | None, int] = (None, 0)
            style = self._style(style_id)
            while style is not None:
                ppr = style.element.pPr
                if ppr is not None and ppr.numPr is not None and ppr.numPr.numId is not None:
                    found = _ids(ppr.numPr)
                    break
                style = style.base_style
            self._num[style_id] = found
        return self._num[style_id]


def _num_pr(p: Paragraph) -> tuple[str | None, int]:
    ppr = p._p.pPr
    num_pr = ppr.numPr if ppr is not None else None
    if num_pr is None or num_pr.numId is None:
        return None, 0
    return _ids(num_pr)


def _ids(num_pr: Any) -> tuple[str, int]:
    ilvl = num_pr.ilvl.val if num_pr.ilvl is not None else 0
    return str(num_pr.numId.val), int(ilvl)


def _style_level(style: str) -> int:
    last = style.rsplit(" ", 1)[-1]
    return int(last) - 1 if last.isdigit() else 0
