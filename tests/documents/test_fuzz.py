"""Damaged files of every kind: a read either succeeds or raises DocumentError, never anything else."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentseat.documents import DocumentError, DocumentText, ReadLimits, read_document

from .build import pdf


def _samples(root: Path) -> dict[str, bytes]:
    d = docx.Document()
    d.add_heading("Title", 1)
    d.add_paragraph("Item", style="List Number")
    d.add_table(rows=2, cols=2).cell(0, 0).text = "cell"
    d.save(str(root / "s.docx"))
    wb = openpyxl.Workbook()
    wb.active.append(["a", 1, 2.5])
    wb.save(root / "s.xlsx")
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Slide"
    slide.notes_slide.notes_text_frame.text = "note"
    deck.save(str(root / "s.pptx"))
    pdf(root / "s.pdf", ["page one", "page two"])
    (root / "s.csv").write_text("a,b\n1,2\n")
    (root / "s.json").write_text('{"a": [1, 2]}')
    return {p.suffix: p.read_bytes() for p in root.iterdir()}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _samples(tmp_path_factory.mktemp("samples"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([".docx", ".xlsx", ".pptx", ".pdf", ".csv", ".json"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0.05, 1)), inside=st.booleans())
def test_damaged_file_reads_or_is_refused_with_a_document_error(
        tmp_path: Path, samples: dict[str, bytes], kind: str, flips: list[tuple[float, int]], cut: float | None,
        inside: bool) -> None:
    if inside and kind in _MAIN_PART:
        # Damage the main XML part and zip it again, so the damage gets past the zip's CRCs.
        data = _damaged_inside(samples[kind], _MAIN_PART[kind], flips, cut)
    else:
        data = _damaged(samples[kind], flips, cut)
    path = tmp_path / f"damaged{kind}"
    path.write_bytes(data)
    try:
        result = read_document(path, name=path.name, mime=None, limits=ReadLimits())
    except DocumentError as exc:
        assert exc.reason in {"malformed", "mismatch", "unsupported", "unsafe", "encrypted", "too_large"}
        assert exc.hint
    else:
        assert isinstance(result, DocumentText) and isinstance(result.markdown, str)


_MAIN_PART = {".docx": "word/document.xml", ".xlsx": "xl/worksheets/sheet1.xml", ".pptx": "ppt/slides/slide1.xml"}


def _damaged(data: bytes, flips: list[tuple[float, int]], cut: float | None) -> bytes:
    out = bytearray(data)
    for where, value in flips:
        out[int(where * len(out))] = value
    return bytes(out[: max(1, int(cut * len(out)))] if cut is not None else out)


def _damaged_inside(data: bytes, part: str, flips: list[tuple[float, int]], cut: float | None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            body = zin.read(item.filename)
            zout.writestr(item.filename, _damaged(body, flips, cut) if item.filename == part else body)
    return out.getvalue()
