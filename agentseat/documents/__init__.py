"""Documents the agent reads and writes: Word, Excel, PowerPoint, PDF, text and images.

Pure file work (no Graph, no tools): `read_document` turns a local file into markdown within
`ReadLimits`; `markdown_to_docx` writes markdown as a Word document. Errors are `DocumentError`.
The format libraries (python-docx, openpyxl, python-pptx, pypdf) are imported on first use,
never by importing this package: `serve` imports it and must answer `initialize` first.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DocumentError
from .model import DocumentText, Kind, ReadLimits
from .reader import read_document

__all__ = ["DocumentError", "DocumentText", "Kind", "ReadLimits", "markdown_to_docx", "read_document"]


def markdown_to_docx(markdown: str, out: Path) -> None:
    """Write `markdown` as a .docx file at `out` (overwritten if it exists); see writer.py."""
    from .writer import markdown_to_docx as write

    write(markdown, out)
