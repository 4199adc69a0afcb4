"""PowerPoint (.pptx) as markdown: per slide its title, text, tables and speaker notes.

Shapes are read in the slide's order (z-order), group shapes recursively. Pictures and charts
are skipped, with a note.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

from .model import DocumentText, ReadLimits
from .output import Sink, table

_BULLETED = {PP_PLACEHOLDER.BODY, PP_PLACEHOLDER.OBJECT}


def read_pptx(path: Path, limits: ReadLimits) -> DocumentText:
    deck = pptx.Presentation(str(path))
    sink = Sink(limits.max_chars)
    skipped = 0
    slides = deck.slides
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None else ""
        hidden = " (hidden)" if slide.element.get("show") == "0" else ""
        parts = [f"## Slide {number}" + (f": {' '.join(title.split())}" if title else "") + hidden]
        counter = [0]
        parts.extend(_shapes(slide.shapes, title_shape, counter))
        skipped += counter[0]
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes:\n" + "\n".join(f"> {line}" if line else ">"
                                                    for line in notes.text.strip().splitlines()))
        if not sink.add("\n\n".join(p for p in parts if p)):
            break
    if skipped:
        sink.note(f"{skipped} picture(s) or chart(s) skipped: text only")
    return sink.result("pptx", slides=len(slides))


def _shapes(shapes: Iterable[Any], title_shape: Any, skipped: list[int]) -> list[str]:
    parts: list[str] = []
    for shape in shapes:
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        kind = _shape_type(shape)
        if kind == MSO_SHAPE_TYPE.GROUP:
            parts.extend(_shapes(shape.shapes, None, skipped))
        elif getattr(shape, "has_table", False) and shape.has_table:
            parts.append(table([[cell.text for cell in row.cells] for row in shape.table.rows]))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            text = _text_frame(shape)
            if text:
                parts.append(text)
        elif kind == MSO_SHAPE_TYPE.PICTURE or getattr(shape, "has_chart", False):
            skipped[0] += 1
    return parts


def _shape_type(shape: Any) -> Any:
    try:
        return shape.shape_type
    except NotImplementedError:  # python-pptx raises for shapes it does not recognise; read them as text
        return None


def _text_frame(shape: Any) -> str:
    bulleted = False
    if shape.is_placeholder:
        try:
            bulleted = shape.placeholder_format.type in _BULLETED
        except ValueError:
            bulleted = False
    lines = []
    for paragraph in shape.text_frame.paragraphs:
        text = " ".join(paragraph.text.split())
        if not text:
            continue
        lines.append("  " * paragraph.level + "- " + text if bulleted else text)
    return "\n".join(lines)
