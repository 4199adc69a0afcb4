"""`markdown_to_docx`: markdown (the subset `markdown.parse` knows) written as a Word document.

Headings use Word's heading styles, lists the built-in list styles with their own numbering
(so each numbered list starts at 1), tables the grid style with a bold header, and links are
real hyperlinks (external relationships).
"""

from __future__ import annotations

from pathlib import Path

import docx
from docx.document import Document
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import RGBColor
from docx.text.paragraph import Paragraph as DocxParagraph

from ..errors import DocumentError
from .markdown import Block, Code, Heading, ListBlock, Paragraph, Rule, Table, parse
from .inline import Styled
from .output import clean

_MONO = "Courier New"
_LINK_COLOR = "0563C1"  # Word's default hyperlink blue


def markdown_to_docx(markdown: str, out: Path) -> None:
    """Write `markdown` as a .docx file at `out` (overwritten if it exists)."""
    document = docx.Document()
    numbering = _Numbering(document)
    for block in parse(clean(markdown)):
        _block(document, block, numbering)
    try:
        document.save(str(out))
    except OSError as exc:
        raise DocumentError(f"the Word document cannot be written ({exc.strerror})", reason="malformed",
                            hint="check that the target folder exists and is writable") from None


def _block(document: Document, block: Block, numbering: _Numbering) -> None:
    if isinstance(block, Heading):
        _runs(document.add_heading("", level=min(block.level, 9)), block.spans)
    elif isinstance(block, Paragraph):
        _runs(document.add_paragraph(style="Quote" if block.quote else None), block.spans)
    elif isinstance(block, Code):
        for line in block.text.split("\n"):
            p = document.add_paragraph(style="No Spacing")
            p.add_run(line).font.name = _MONO
    elif isinstance(block, Rule):
        document.add_paragraph()
    elif isinstance(block, ListBlock):
        _list(document, block, numbering, level=0)
    elif isinstance(block, Table):
        _table(document, block)


def _list(document: Document, block: ListBlock, numbering: _Numbering, level: int) -> None:
    style = ("List Number" if block.ordered else "List Bullet") + (" 2" if level else "")
    num_id = numbering.restart(style) if block.ordered else None
    for item in block.items:
        p = document.add_paragraph(style=style)
        if num_id is not None:
            _set_num(p, num_id)
        _runs(p, item.spans)
        if item.children is not None:
            _list(document, item.children, numbering, level=1)


def _table(document: Document, block: Table) -> None:
    width = max(len(r) for r in block.rows)
    table = document.add_table(rows=len(block.rows), cols=width)
    table.style = "Table Grid"
    for r, row in enumerate(block.rows):
        for c, spans in enumerate(row):
            if r == 0:
                spans = [Styled(s.text, True, s.italic, s.code, s.link) for s in spans]
            _runs(table.cell(r, c).paragraphs[0], spans)


def _runs(p: DocxParagraph, spans: list[Styled]) -> None:
    for span in spans:
        if not span.text:
            continue
        if span.link:
            _hyperlink(p, span)
            continue
        run = p.add_run(span.text)
        run.bold = span.bold or None
        run.italic = span.italic or None
        if span.code:
            run.font.name = _MONO


def _hyperlink(p: DocxParagraph, span: Styled) -> None:
    # python-docx reads hyperlinks but has no API to add one: build w:hyperlink with an external relationship.
    assert span.link is not None
    r_id = p.part.relate_to(span.link, RT.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), r_id)
    p._p.append(link)
    run = p.add_run(span.text)  # appended to the paragraph, then moved into the hyperlink
    link.append(run._r)
    run.bold = span.bold or None
    run.italic = span.italic or None
    run.font.underline = True
    run.font.color.rgb = RGBColor.from_string(_LINK_COLOR)
    if span.code:
        run.font.name = _MONO


def _set_num(p: DocxParagraph, num_id: int) -> None:
    p_pr = p._p.get_or_add_pPr()
    num_pr = p_pr.get_or_add_numPr()
    num_pr.get_or_add_ilvl().val = 0
    num_pr.get_or_add_numId().val = num_id


class _Numbering:
    """New numbering instances that restart at 1: the built-in list styles share one instance each,
    so without this the second numbered list in a document would continue the first's count."""

    def __init__(self, document: Document) -> None:
        self._document = document
        self._numbering = document.part.numbering_part.element

    def restart(self, style: str) -> int:
        abstract_id = self._abstract_of(style)
        num = self._numbering.add_num(abstract_id)
        override = OxmlElement("w:lvlOverride")
        override.set(qn("w:ilvl"), "0")
        start = OxmlElement("w:startOverride")
        start.set(qn("w:val"), "1")
        override.append(start)
        num.append(override)
        return int(num.numId)

    def _abstract_of(self, style: str) -> int:
        num_id = self._document.styles[style].element.pPr.numPr.numId.val
        num = self._numbering.num_having_numId(num_id)
        return int(num.abstractNumId.val)
